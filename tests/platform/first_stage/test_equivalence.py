"""Plumbing does not change the maths: a resumed first-stage run equals an uninterrupted one."""

import pytest
import torch

from platform.checkpoint import list_checkpoints, load_checkpoint
from platform.first_stage.train import first_stage_loop
from platform.reporting import LocalReporter
from tests.platform.first_stage.conftest import toy_config


def _run(cfg, run_dir, stop_at):
    from omegaconf import OmegaConf

    first_stage_loop({"cfg": OmegaConf.to_container(cfg, resolve=True), "run_dir": str(run_dir),
                      "reporter": LocalReporter(run_dir / "report", quiet=True), "stop_at": stop_at})


def _assert_same_tree(a, b, path=""):
    if isinstance(a, torch.Tensor):
        assert torch.equal(a, b), path
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), path
        for k in a:
            _assert_same_tree(a[k], b[k], f"{path}.{k}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b)):
            _assert_same_tree(x, y, f"{path}.{i}")
    else:
        assert a == b, path


@pytest.mark.slow  # ~15 s quiet, ~50 s on a contended 2-core box
def test_resumed_run_equals_the_uninterrupted_run_bit_for_bit(toy_overrides, tmp_path):
    # KL (posterior samples draw from the torch RNG) with the GAN on from step 2; 6 steps
    # configured so that stopping at 4 skips the final evaluation.
    cfg = toy_config(toy_overrides, "first_stage.perceptual_weight=0", "first_stage.train.steps=6",
                     "first_stage.train.ckpt_every=2")
    _run(cfg, tmp_path / "straight", stop_at=4)
    _run(cfg, tmp_path / "resumed", stop_at=2)
    _run(cfg, tmp_path / "resumed", stop_at=4)
    straight, resumed = (list_checkpoints(tmp_path / name / "checkpoints")[-1] for name in ("straight", "resumed"))
    assert straight.name == resumed.name == "step-00000004"
    states_a, meta_a, _ = load_checkpoint(straight)
    states_b, meta_b, _ = load_checkpoint(resumed)
    _assert_same_tree(states_a, states_b)  # weights, log-variance, discriminator, both Adam states
    assert meta_a["data_position"] == meta_b["data_position"] == [{"epoch": 0, "batch": 4}]
    assert meta_a["rng"] == meta_b["rng"]
