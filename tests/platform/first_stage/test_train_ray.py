"""The same loop on Ray Train: TorchTrainer with 2 CPU workers (DDP over gloo)."""

import pytest

from platform.checkpoint import list_checkpoints, load_checkpoint
from platform.first_stage.train import train_first_stage
from platform.reporting import LocalReporter
from tests.platform.first_stage.conftest import toy_config


@pytest.mark.slow
def test_torchtrainer_with_two_cpu_workers_trains_and_checkpoints(ray_cluster, toy_overrides, run_dir):
    # 4 steps, GAN on from step 2: D's two forwards per backward under DDP are exercised.
    cfg = toy_config(toy_overrides, "first_stage.train.num_workers=2", "first_stage.perceptual_weight=0")
    result = train_first_stage(cfg, run_dir, LocalReporter(run_dir / "report", quiet=True))
    assert result.step == 4
    assert [p.name for p in list_checkpoints(run_dir / "checkpoints")] == ["step-00000002", "step-00000004"]
    _, meta, _ = load_checkpoint(result.checkpoint)
    assert len(meta["data_position"]) == 2  # both ranks' data positions
    assert all(pos["batch"] == 4 for pos in meta["data_position"])
    assert meta["lr"] == cfg.first_stage.train.lr  # scale_lr is off at smoke scale
    assert result.scale_factor > 0 and "psnr" in result.metrics
