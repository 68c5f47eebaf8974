"""A sweep axis that changes no stage key is refused before anything starts."""

import pytest
from omegaconf import OmegaConf

from platform.orchestration.plan import TrialPlan
from platform.orchestration.runner import SweepSetupError, Trial, refuse_collapsed_trials

_CFG = OmegaConf.create({"sweep": {"stages": ["first_stage", "ldm", "eval"]}, "first_stage": {"regularizer": "kl"}})


def _trial(index, override, eval_key):
    trial = Trial(TrialPlan(index, (override,), _CFG), cfg={})
    trial.keys = {"first_stage": "f", "ldm": "l", "eval": eval_key}
    return trial


def test_trials_with_equal_keys_are_refused_naming_the_axis():
    with pytest.raises(SweepSetupError) as info:
        refuse_collapsed_trials([_trial(0, "eval.num_workers=1", "e"), _trial(1, "eval.num_workers=2", "e")])
    message = str(info.value)
    assert "trials 0 and 1" in message and "eval.num_workers=1 vs eval.num_workers=2" in message
    refuse_collapsed_trials([_trial(0, "eval.seed=1", "e1"), _trial(1, "eval.seed=2", "e2")])  # distinct: fine


def test_operational_overrides_do_not_define_the_sweep():
    from platform.orchestration.runner import defining_overrides

    assert defining_overrides(["first_stage=kl_f8", "paths.work_dir=/x", "sweep.rerun=[eval]", "ldm.train.lr=1e-4",
                               "cluster.num_cpus=2", "+experiment=kl_vs_vq"]) == [
        "first_stage=kl_f8", "ldm.train.lr=1e-4", "+experiment=kl_vs_vq"]
