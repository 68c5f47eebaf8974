"""Stage keys change exactly when something that determines the stage's output changes."""

from omegaconf import OmegaConf

from platform.config.compose import compose_config
from platform.orchestration.keys import stage_keys

IDS = {"train": "d-train", "eval": "d-eval"}


def _keys(*overrides, ids=IDS):
    cfg = OmegaConf.to_container(compose_config(["scale=smoke", *overrides]), resolve=True)
    return stage_keys(cfg, ids)


def test_keys_are_stable_and_independent_of_where_things_run():
    base = _keys()
    assert base == _keys()
    assert base == _keys("paths.work_dir=/elsewhere", "tracking.uri=http://x:5000", "sweep.dry_run=true")


def test_eval_only_change_reuses_first_stage_and_ldm():
    base, other = _keys(), _keys("eval.guidance_scale=3.0")
    assert other["first_stage"] == base["first_stage"] and other["ldm"] == base["ldm"]
    assert other["eval"] != base["eval"]


def test_ldm_change_keeps_first_stage():
    base, other = _keys(), _keys("ldm.train.lr=1e-3")
    assert other["first_stage"] == base["first_stage"]
    assert other["ldm"] != base["ldm"] and other["eval"] != base["eval"]


def test_first_stage_or_data_change_propagates_downstream():
    base = _keys()
    for other in (_keys("first_stage=kl_f8"), _keys(ids={"train": "other", "eval": "d-eval"})):
        assert all(other[s] != base[s] for s in ("first_stage", "ldm", "eval"))


def test_identity_has_no_first_stage_key():
    keys = _keys("first_stage=identity")
    assert keys["first_stage"] is None and keys["ldm"]
