"""The first-stage loop on real shards, in-process: it learns, checkpoints, reloads and resumes."""

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from platform.checkpoint import list_checkpoints, load_checkpoint
from platform.first_stage.evaluate import evaluate_reconstruction
from platform.first_stage.load import load_first_stage
from platform.first_stage.train import latent_scale_factor, make_train_loader, read_result, train_first_stage
from platform.reporting import LocalReporter
from tests.conftest import REPO_ROOT
from tests.platform.first_stage.conftest import toy_config


def _history(reporter, key):
    return [(step, values[key]) for step, values in reporter.history if key in values]


def test_rfid_off_is_reported_unavailable_with_its_key(toy_overrides, run_dir):
    cfg = toy_config(toy_overrides, "first_stage.train.steps=1", "first_stage.train.ckpt_every=1",
                     "first_stage.rfid=false", "eval.num_samples=4", "eval.batch_size=4")
    result = train_first_stage(cfg, run_dir, LocalReporter(run_dir / "report", quiet=True))
    assert "rfid" not in result.metrics and "first_stage.rfid is false" in result.unavailable["rfid"]
    assert result.metrics["n"] == 4 and result.metrics["psnr_lo"] < result.metrics["psnr"]
    assert read_result(run_dir) == result  # what the sweep's record is made from


@pytest.mark.slow
def test_smoke_run_learns_checkpoints_and_reloads_identically(toy_overrides, run_dir):
    cfg = toy_config(toy_overrides, "first_stage.train.steps=10", "first_stage.train.ckpt_every=5",
                     "first_stage.disc_start=8")
    reporter = LocalReporter(run_dir / "report", quiet=True)
    result = train_first_stage(cfg, run_dir, reporter)

    rec = [v for _, v in _history(reporter, "train/rec")]
    assert len(rec) == 10 and sum(rec[-3:]) < sum(rec[:3])  # reconstruction loss goes down
    assert [v for _, v in _history(reporter, "train/g")][:8] == [0.0] * 8  # no GAN before disc_start
    assert _history(reporter, "train/d_weight")[-1][1] > 0
    assert [p.name for p in list_checkpoints(run_dir / "checkpoints")] == ["step-00000005", "step-00000010"]
    assert result.step == 10 and result.checkpoint.name == "step-00000010"
    assert {"psnr", "ssim", "lpips", "rfid", "psnr_lo", "psnr_hi"} <= set(result.metrics) and not result.unavailable
    assert (run_dir / "report" / "artifacts" / "reconstructions" / "step_00000010.png").is_file()

    # Self-describing: the checkpoint alone rebuilds the model, which reproduces the
    # loop's own evaluation and its scale_by_std factor.
    model = load_first_stage(result.checkpoint)
    assert not model.training and not any(p.requires_grad for p in model.parameters())
    metrics, _, _ = evaluate_reconstruction(model, cfg, torch.device("cpu"), rfid=False)
    assert metrics["psnr"] == pytest.approx(result.metrics["psnr"], rel=1e-5)
    assert metrics["lpips"] == pytest.approx(result.metrics["lpips"], rel=1e-5)
    first = next(iter(make_train_loader(cfg, 0, 0, num_workers=0)))["image"]
    assert latent_scale_factor(model, first) == pytest.approx(result.scale_factor, rel=1e-5)
    assert model.scale_factor == pytest.approx(result.scale_factor)
    x = first[:2]
    with torch.no_grad():
        again = load_first_stage(run_dir / "checkpoints", cfg)  # a run directory works too
        assert torch.equal(model.decode(model.encode(x)), again.decode(again.encode(x)))

    _, meta, _ = load_checkpoint(result.checkpoint)
    assert meta["config"]["first_stage"]["name"] == "kl_f4" and meta["data_position"] == [{"epoch": 0, "batch": 10}]
    # Finished runs are not retrained.
    assert train_first_stage(cfg, run_dir, LocalReporter(run_dir / "again", quiet=True)) == result


@pytest.mark.slow
def test_interrupted_run_resumes_from_its_checkpoint(toy_overrides, run_dir):
    cfg = toy_config(toy_overrides, "first_stage.perceptual_weight=0", "first_stage=vq_f8")
    first = LocalReporter(run_dir / "first", quiet=True)
    stopped = train_first_stage(cfg, run_dir, first, stop_at=2)
    assert stopped.step == 2 and stopped.scale_factor == 1.0  # VQ latents are not rescaled
    assert [s for s, _ in _history(first, "train/rec")] == [1, 2]

    second = LocalReporter(run_dir / "second", quiet=True)
    result = train_first_stage(cfg, run_dir, second)
    assert [s for s, _ in _history(second, "train/rec")] == [3, 4]  # continued, not restarted
    assert result.step == 4
    _, meta, _ = load_checkpoint(result.checkpoint)
    assert meta["data_position"] == [{"epoch": 0, "batch": 4}]
    assert 0 < _history(second, "train/codebook_usage")[-1][1] <= 1
    assert _history(second, "train/perplexity")[-1][1] >= 1


def test_the_identity_is_not_trained(toy_overrides, run_dir):
    cfg = toy_config(toy_overrides, "first_stage=identity")
    with pytest.raises(ValueError, match="identity"):
        train_first_stage(cfg, run_dir, LocalReporter(run_dir, quiet=True))
    model = load_first_stage(None, cfg)
    x = torch.rand(1, 3, 32, 32)
    assert torch.equal(model.encode(x), x) and model.scale_factor == 1.0 and model.f == 1


@pytest.mark.slow
def test_killed_cli_run_continues_from_its_first_checkpoint(toy_overrides):
    # 16 steps with a checkpoint every 2: the run is killed after its first checkpoint, and ~14
    # steps of margin keep the kill ahead of the run's end on a fast or a loaded machine.
    steps = 16
    args = [*toy_overrides, "stage=first_stage", "first_stage.perceptual_weight=0", f"first_stage.train.steps={steps}"]
    command = [sys.executable, "-m", "platform.train", *args]
    work = next(a.split("=", 1)[1] for a in args if a.startswith("paths.work_dir="))
    proc = subprocess.Popen(command, cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.time() + 240
        while time.time() < deadline and not list(Path(work).glob("stages/first_stage/*/checkpoints/step-*")):
            assert proc.poll() is None, proc.stdout.read()
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)  # no chance to clean up, like a lost node
    finally:
        proc.wait()
    ckpts = list(Path(work).glob("stages/first_stage/*/checkpoints/step-*"))
    assert ckpts, "no checkpoint appeared before the deadline"
    killed_at = max(int(p.name.split("-")[1]) for p in ckpts)
    assert killed_at < steps

    done = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"from step {killed_at}" in done.stdout
    assert f"done: step {steps}" in done.stdout
    assert f"step {killed_at + 1}/{steps}" in done.stdout and f"step 1/{steps}" not in done.stdout


def test_work_of_another_config_is_neither_reused_nor_resumed(toy_overrides, run_dir):
    import json

    from omegaconf import OmegaConf

    from platform.checkpoint import save_checkpoint
    from platform.first_stage.train import RESULT_FILE
    from platform.training.resume import ResumeConfigError

    cfg = toy_config(toy_overrides, "first_stage.perceptual_weight=0")
    other = OmegaConf.to_container(toy_config(toy_overrides, "first_stage.perceptual_weight=0",
                                              "first_stage.train.lr=0.5"), resolve=True)
    ckpt = save_checkpoint(run_dir / "checkpoints", 2, {}, {"config": other, "data_position": [{"epoch": 0, "batch": 2}]})
    (run_dir / RESULT_FILE).write_text(json.dumps({"checkpoint": str(ckpt), "step": 4, "scale_factor": 1.0,
                                                   "metrics": {}}))
    with pytest.raises(ResumeConfigError, match=r"first_stage\.train\.lr: 0\.5 -> "):
        train_first_stage(cfg, run_dir, LocalReporter(run_dir / "r", quiet=True))  # the finished result
    (run_dir / RESULT_FILE).unlink()
    with pytest.raises(ResumeConfigError, match=r"first_stage\.train\.lr: 0\.5 -> "):
        train_first_stage(cfg, run_dir, LocalReporter(run_dir / "r", quiet=True))  # its checkpoint


def test_a_diverging_run_stops_with_the_step_it_diverged_at(toy_overrides, run_dir):
    from platform.training.guards import NonFiniteLossError

    cfg = toy_config(toy_overrides, "first_stage.perceptual_weight=0", "first_stage.train.lr=1e30",
                     "first_stage.disc_start=100")
    with pytest.raises(NonFiniteLossError, match=r"first_stage training diverged: train/loss=(nan|inf|-inf) at step [2-4]"):
        train_first_stage(cfg, run_dir, LocalReporter(run_dir / "r", quiet=True))
    assert not (run_dir / "first_stage_result.json").exists()  # no "ok" result from a diverged run
