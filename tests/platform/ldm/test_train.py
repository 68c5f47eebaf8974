"""Smoke LDM runs on real shards: each conditioning lowers the loss, checkpoints reload, runs resume."""

from __future__ import annotations

import json

import pytest
import torch

from platform.checkpoint import list_checkpoints, load_checkpoint
from platform.ldm.load import load_ldm
from platform.ldm.train import train_ldm
from platform.reporting import LocalReporter
from tests.platform.ldm.conftest import smoke_config


# Smaller than scale=smoke's UNet: five runs must fit a shared 2-core box.
TINY = ["ldm.unet.channels=16", "ldm.unet.context_dim=32"]


def _losses(run_dir):
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [r["train/loss"] for r in rows if "train/loss" in r]


def _run(cfg, run_dir, fs_ckpt):
    reporter = LocalReporter(run_dir, quiet=True)
    return train_ldm(cfg, run_dir, reporter, first_stage_checkpoint=fs_ckpt)


@pytest.mark.slow
@pytest.mark.parametrize("conditioning,extra", [
    ("none", []), ("class", []), ("text", ["ldm.cond.text_encoder=bert"]), ("text", []), ("concat", []),
])
def test_smoke_run_lowers_loss_and_reloads(tiny_shards, first_stage_f8, tmp_path, conditioning, extra):
    cfg = smoke_config(tiny_shards, tmp_path, f"ldm.conditioning={conditioning}", "ldm.train.steps=24",
                       "ldm.train.log_every=1", "ldm.train.ckpt_every=12", "ldm.train.lr=2e-3",
                       "ldm.train.batch_size=8", *TINY, *extra)
    run_dir = tmp_path / "run"
    result = _run(cfg, run_dir, first_stage_f8)
    assert result.step == 24 and result.checkpoint.name == "step-00000024"
    assert result.scale_factor == 0.75  # read from the first-stage checkpoint
    losses = _losses(run_dir)
    assert len(losses) == 24 and sum(losses[-6:]) / 6 < sum(losses[:6]) / 6, losses
    assert (run_dir / "artifacts" / "samples" / "step_00000024.png").is_file()

    # The checkpoint is self-describing: it alone rebuilds the pipeline, with the EMA
    # weights it stored (tests/platform/ldm/test_equivalence.py checks them against training).
    states, meta, _ = load_checkpoint(result.checkpoint)
    stored = meta["first_stage"]["checkpoint"]  # relative: the work dir can move
    assert not stored.startswith("/") and (result.checkpoint / stored).resolve() == first_stage_f8.resolve()
    assert meta["config"]["ldm"]["conditioning"] == conditioning
    a, _ = load_ldm(result.checkpoint)
    params = dict(a.model.named_parameters())
    assert all(torch.equal(params[name], value) for name, value in states["ema"]["shadow"].items())
    images = a.generate([0, 1], seed=0, steps=3)
    assert images.dtype == torch.uint8 and images.shape == (2, 3, 32, 32)


@pytest.mark.slow
def test_relaunch_resumes_from_the_last_checkpoint(tiny_shards, first_stage_f8, tmp_path):
    run_dir = tmp_path / "run"
    cfg = smoke_config(tiny_shards, tmp_path, "ldm.conditioning=class", "ldm.train.steps=10",
                       "ldm.train.ckpt_every=5", "ldm.train.log_every=1", "ldm.train.batch_size=8", *TINY)
    _run(cfg, run_dir, first_stage_f8)  # "killed" after step 10 (checkpoints at 5, 10)
    first = load_checkpoint(list_checkpoints(run_dir / "checkpoints")[-1])
    cfg.ldm.train.steps = 16
    result = _run(cfg, run_dir, first_stage_f8)
    steps_logged = [json.loads(line)["step"] for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert steps_logged == list(range(1, 17))  # the relaunch continued at 11, it did not restart
    assert result.step == 16
    assert first[1]["data_position"][0]["batch"] == 10
    states, meta, _ = load_checkpoint(result.checkpoint)
    assert meta["data_position"][0] == {"epoch": 0, "batch": 16}  # 256 samples / 8: still epoch 0
    assert states["ema"]["num_updates"] == 16


@pytest.mark.slow
def test_killed_run_resumes_from_its_checkpoint(tiny_shards, first_stage_f8, tmp_path):
    """SIGKILL a training process after its first checkpoint; the relaunch continues from it."""
    import os
    import signal
    import subprocess
    import sys
    import time

    from omegaconf import OmegaConf

    from tests.conftest import REPO_ROOT

    run_dir = tmp_path / "run"
    cfg = smoke_config(tiny_shards, tmp_path, "ldm.conditioning=class", "ldm.train.steps=400",
                       "ldm.train.ckpt_every=3", "ldm.train.log_every=1", "ldm.train.batch_size=8", *TINY)
    cfg_file = tmp_path / "cfg.yaml"
    OmegaConf.save(cfg, cfg_file)
    script = ("import sys; from pathlib import Path; from omegaconf import OmegaConf; "
              "from platform.ldm.train import train_ldm; from platform.reporting import LocalReporter; "
              "train_ldm(OmegaConf.load(sys.argv[1]), Path(sys.argv[2]), LocalReporter(sys.argv[2], quiet=True), "
              "first_stage_checkpoint=Path(sys.argv[3]))")
    proc = subprocess.Popen([sys.executable, "-c", script, str(cfg_file), str(run_dir), str(first_stage_f8)],
                            cwd=REPO_ROOT)
    try:
        deadline = time.time() + 240
        while not list_checkpoints(run_dir / "checkpoints") and time.time() < deadline and proc.poll() is None:
            time.sleep(0.5)
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    saved = list_checkpoints(run_dir / "checkpoints")
    assert saved, "the training process wrote no checkpoint before the deadline"
    killed_at = load_checkpoint(saved[-1])[2]
    assert killed_at + 3 < 400

    # The same config (resume refuses a lowered step total); stop at the next checkpoint (every 3).
    reporter = LocalReporter(run_dir, quiet=True)
    result = train_ldm(cfg, run_dir, reporter, first_stage_checkpoint=first_stage_f8, stop_at=killed_at + 3)
    assert [step for step, _ in reporter.history] == [killed_at + 1, killed_at + 2, killed_at + 3]
    assert result.step == killed_at + 3
    assert load_checkpoint(result.checkpoint)[0]["ema"]["num_updates"] == killed_at + 3
