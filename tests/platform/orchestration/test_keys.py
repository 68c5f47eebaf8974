"""Stage keys change exactly when something that determines the stage's result changes."""

import copy
import functools

import pytest
import yaml
from omegaconf import OmegaConf

from platform.config.compose import compose_config
from platform.config.semantics import FIELDS
from platform.orchestration.keys import stage_keys

IDS = {"train": "d-train", "eval": "d-eval"}
CODE = {"first_stage": "code-fs", "ldm": "code-ldm", "eval": "code-eval"}
STAGES = ("first_stage", "ldm", "eval")


def _keys(*overrides, ids=IDS, code=CODE):
    cfg = OmegaConf.to_container(compose_config(["scale=smoke", *overrides]), resolve=True)
    return stage_keys(cfg, ids, code)


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
        assert all(other[s] != base[s] for s in STAGES)


def test_identity_has_no_first_stage_key():
    keys = _keys("first_stage=identity")
    assert keys["first_stage"] is None and keys["ldm"]


def test_code_changes_rerun_their_stage_and_what_follows():
    base = _keys()
    ldm_code = _keys(code={**CODE, "ldm": "changed"})
    assert ldm_code["first_stage"] == base["first_stage"]
    assert ldm_code["ldm"] != base["ldm"] and ldm_code["eval"] != base["eval"]
    metric_code = _keys(code={**CODE, "eval": "changed"})  # a metric, or other Inception weights
    assert metric_code["ldm"] == base["ldm"] and metric_code["eval"] != base["eval"]


# One representative override per classified field: the key of every stage the table names
# changes, the others do not (operational fields change no key at all).
_CHANGES = {
    "data.resolution": "64", "data.channels": "1", "data.num_classes": "7", "data.shuffle_buffer": "17",
    "data.loader_workers": "3", "data.on_error": "skip", "first_stage.regularizer": "vq",
    "first_stage.f": "8", "first_stage.latent_channels": "5", "first_stage.base_channels": "24",
    "first_stage.channel_mult": "[1,2,3]", "first_stage.num_res_blocks": "3",
    "first_stage.attn_resolutions": "[8]", "first_stage.codebook_size": "64", "first_stage.kl_weight": "0.5",
    "first_stage.codebook_weight": "0.5", "first_stage.vq_beta": "0.5", "first_stage.perceptual_weight": "0.5",
    "first_stage.disc_weight": "0.25", "first_stage.disc_start": "3", "first_stage.disc_layers": "2",
    "first_stage.disc_channels": "8", "ldm.unet.channels": "48", "ldm.unet.channel_mult": "[1,3]",
    "ldm.unet.num_res_blocks": "2", "ldm.unet.attention_resolutions": "[2]", "ldm.unet.num_heads": "2",
    "ldm.unet.transformer_depth": "2", "ldm.unet.context_dim": "32", "ldm.conditioning": "none",
    "ldm.cond.text_encoder": "bert", "ldm.cond.text_layers": "3", "ldm.cond.max_text_tokens": "8",
    "ldm.cond.cfg_dropout": "0.2", "ldm.cond.sr_factor": "2", "ldm.diffusion.num_steps": "500",
    "ldm.diffusion.beta_schedule": "linear", "ldm.diffusion.beta_start": "0.001", "ldm.diffusion.beta_end": "0.02",
    "ldm.diffusion.prediction": "v_prediction", "ldm.ema_decay": "0.99", "ldm.latent_cache": "true",
    "eval.metrics": "[fid]", "eval.num_samples": "16", "eval.reference_split": "eval", "eval.sampler": "ddpm",
    "eval.sampling_steps": "[20]", "eval.checkpoints": "last", "eval.eta": "0.5", "eval.guidance_scale": "2.0",
    "eval.kid_subset_size": "8", "eval.kid_subsets": "10", "eval.pr_k": "5", "eval.seed": "1", "seed": "3",
    "eval.reference_seed": "5", "eval.uncertainty_repeats": "4", "first_stage.learn_logvar": "true", "first_stage.rfid": "false",
    "ldm.sample_every": "5", "eval.batch_size": "5", "eval.num_workers": "3", "eval.gpus_per_worker": "0.5",
    "eval.inception_weights": "/some/weights.pth", "data.name": "other", "first_stage.name": "renamed",
    "scale.description": "x", "experiment.name": "x", "experiment.description": "x",
    "sweep.max_concurrent_trials": "2", "paths.data_dir": "/d", "cluster.num_cpus": "3",
    "tracking.experiment_name": "x", "data.train_shards": "/x", "data.eval_shards": "/y",
}
for _stage in ("first_stage", "ldm"):
    _CHANGES.update({f"{_stage}.train.steps": "7", f"{_stage}.train.batch_size": "3",
                     f"{_stage}.train.grad_accum": "2", f"{_stage}.train.lr": "0.01",
                     f"{_stage}.train.scale_lr": "true", f"{_stage}.train.ckpt_every": "3",
                     f"{_stage}.train.log_every": "1", f"{_stage}.train.num_workers": "2",
                     f"{_stage}.train.use_gpu": "true", f"{_stage}.train.precision": "fp32"})


@functools.lru_cache(maxsize=1)
def _smoke() -> dict:
    return OmegaConf.to_container(compose_config(["scale=smoke"]), resolve=True)


def _with(name: str, text: str) -> dict:
    cfg = copy.deepcopy(_smoke())
    *parents, leaf = name.split(".")
    node = cfg
    for part in parents:
        node = node[part]
    node[leaf] = yaml.safe_load(text)
    return cfg


@pytest.mark.parametrize("name", sorted(_CHANGES))
def test_each_field_changes_exactly_the_keys_the_table_says(name):
    base, changed = stage_keys(_smoke(), IDS, CODE), stage_keys(_with(name, _CHANGES[name]), IDS, CODE)
    # A stage's key also changes when a stage it consumes changes.
    expected = set(FIELDS[name])
    if "first_stage" in expected:
        expected |= {"ldm", "eval"}
    if "ldm" in expected:
        expected.add("eval")
    assert {s for s in STAGES if base[s] != changed[s]} == expected


def test_every_semantic_field_is_exercised():
    assert sorted(f for f in set(FIELDS) - set(_CHANGES) if FIELDS[f]) == []
