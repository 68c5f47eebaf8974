"""``python -m platform.nightly`` after a real smoke sweep (issue #13's acceptance).

One tiny sweep is shared by the module: the identity LDM trial of ``downsample_factor``
(no first stage to train), 20 steps with a checkpoint every 10. The tests run in file
order and build on each other; each adds the checkpoints it needs the way training
writes them (``save_checkpoint``). Nights run in-process (``main(argv)``, with
``nightly.nice=0`` so the test process keeps its priority) except where a process of
its own is the point: the second night (a user's command, imports included) and two
jobs started at once.
"""

from __future__ import annotations

import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from platform.checkpoint import TENSORS_FILE, load_checkpoint, save_checkpoint
from platform.tracking import TrackingStore
from tests.conftest import REPO_ROOT, run_module

pytestmark = pytest.mark.slow  # ~2-3 min on a quiet 2-core machine, all tests together
EXPERIMENT = "downsample_factor"


@pytest.fixture(scope="module")
def night(tmp_path_factory, tiny_shards) -> SimpleNamespace:
    work = tmp_path_factory.mktemp("nightly") / "work"
    train, test = tiny_shards
    common = [f"+experiment={EXPERIMENT}", "first_stage=identity", "scale=smoke", "ldm.train.steps=20",
              "ldm.train.ckpt_every=10", "ldm.train.batch_size=8", f"paths.work_dir={work}",
              f"data.train_shards={train}", f"data.eval_shards={test}"]
    out = run_module("platform.sweep", *common, "sweep.stages=[first_stage,ldm]", "cluster.num_cpus=2", timeout=900)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    store = TrackingStore(f"sqlite:///{work / 'mlflow.db'}")
    (trial,) = store.runs(EXPERIMENT, "tags.kind = 'trial'")
    checkpoints = work / "stages" / "ldm" / trial.data.tags["ldm_key"] / "checkpoints"
    assert sorted(p.name for p in checkpoints.iterdir()) == ["step-00000010", "step-00000020"]
    return SimpleNamespace(work=work, common=common, store=store, run_id=trial.info.run_id, dir=checkpoints)


def _nightly(night: SimpleNamespace, capsys, *extra: str) -> tuple[int, str]:
    """One night in this process; returns (exit code, what it printed)."""
    from platform.nightly.__main__ import main

    code = main([*night.common, "nightly.nice=0", *extra])
    return code, capsys.readouterr().out


def _nightly_process(night: SimpleNamespace, *extra: str) -> subprocess.Popen:
    """One night as cron starts it: its own process, default ``nightly.nice``."""
    return subprocess.Popen([sys.executable, "-m", "platform.nightly", *night.common, *extra], cwd=REPO_ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _steps(night: SimpleNamespace, key: str = "eval/n") -> list[int]:
    """Steps of every ``key`` entry on the trial run: one per evaluation logged."""
    return sorted(step for step, _ in night.store.metric_history(night.run_id, key))


def _new_checkpoint(night: SimpleNamespace, source_step: int, step: int, damage: float = 0.0) -> Path:
    """What training writes next: the weights of ``source_step``, nudged as by a few more
    optimiser steps, at ``step``; ``damage`` also shifts the denoiser's output bias (its
    noise prediction), which wrecks the samples."""
    states, meta, _ = load_checkpoint(night.dir / f"step-{source_step:08d}")
    generator = torch.Generator().manual_seed(step)
    for weights in (states["model"], states["ema"]["shadow"]):
        for name, tensor in weights.items():
            if tensor.is_floating_point():
                weights[name] = tensor + 1e-4 * torch.randn(tensor.shape, generator=generator)
        weights["unet.conv_out.bias"] = weights["unet.conv_out.bias"] + damage
    return save_checkpoint(night.dir, step, states, meta)


def _summary(night: SimpleNamespace, printed: str, name: str) -> str:
    """The artifact ``name`` of the nightly run that ``printed`` says the night logged to."""
    (line,) = [line for line in printed.splitlines() if "summary logged to run" in line]
    run_id = line.split("summary logged to run ")[1].split()[0]
    return Path(night.store.client.download_artifacts(run_id, name, str(night.work))).read_text()


def test_first_night_evaluates_every_checkpoint_once_on_its_trial_run(night, capsys):
    code, out = _nightly(night, capsys)
    assert code == 0, out
    assert "evaluated 2, already evaluated 0" in out
    assert _steps(night) == [10, 20] and _steps(night, "eval/fid") == [10, 20]  # at the training steps, once
    run = night.store.get_run(night.run_id)
    assert run.data.metrics["eval/n"] == 32 and {"eval/kid", "eval/fid_lo", "eval/fid_hi"} <= set(run.data.metrics)
    assert sorted(v for k, v in run.data.tags.items() if k.startswith("eval_identity.")) == ["10", "20"]
    assert run.data.tags["eval.detector"].startswith("inception-") and run.data.tags["eval.weights_source"]
    (nightly,) = night.store.runs("nightly", "tags.kind = 'nightly'")
    assert {"date", "git_commit", "nightly_scope"} <= set(nightly.data.tags)
    lines = _summary(night, out, "summary.csv").splitlines()
    assert lines[0].startswith("experiment,run,step,status,fid,kid,precision,recall,d_fid")
    assert sorted(line.split(",")[2:4] for line in lines[1:]) == [["10", "evaluated"], ["20", "evaluated"]]


def test_second_night_evaluates_nothing_in_seconds(night):
    before, started = resource.getrusage(resource.RUSAGE_CHILDREN), time.time()
    job = _nightly_process(night)
    out = job.communicate(timeout=300)[0]
    wall, after = time.time() - started, resource.getrusage(resource.RUSAGE_CHILDREN)
    assert job.returncode == 0, out[-3000:]
    assert "already evaluated 2" in out and "nothing new" in out
    # Under 30 s on a quiet 2-core machine, imports included; CPU seconds are what a
    # loaded machine cannot inflate.
    cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    assert cpu < 30, (cpu, wall)
    assert _steps(night) == [10, 20]
    assert len(night.store.runs("nightly", "tags.kind = 'nightly'")) == 1  # a night with nothing new adds no run


def test_platform_evaluate_recognises_what_the_night_evaluated(night, capsys):
    from platform.evaluate import main

    assert main([*night.common, f"evaluate.run_id={night.run_id}"]) == 0
    out = capsys.readouterr().out
    assert [line.split()[:3] for line in out.splitlines()] == [["done", "step", "10"], ["done", "step", "20"]], out
    assert _steps(night) == [10, 20]


def test_training_continued_only_the_new_checkpoint_is_evaluated(night, capsys):
    _new_checkpoint(night, 20, 30)
    code, out = _nightly(night, capsys)
    assert code == 0, out
    assert "evaluated 1, already evaluated 2" in out
    assert _steps(night) == [10, 20, 30]


def test_incomplete_and_corrupt_checkpoints_are_skipped_and_reported(night, capsys):
    incomplete = night.dir / "step-00000050"
    shutil.copytree(night.dir / "step-00000030", incomplete)
    (incomplete / "digest.json").unlink()  # as a writer that died before its completion marker
    corrupt = _new_checkpoint(night, 30, 40)
    with open(corrupt / TENSORS_FILE, "r+b") as handle:  # a flipped block in the weights
        handle.seek(corrupt.joinpath(TENSORS_FILE).stat().st_size // 2)
        handle.write(b"\x00" * 64)
    _new_checkpoint(night, 30, 35)
    code, out = _nightly(night, capsys)
    assert code == 4, out
    lines = out.splitlines()
    assert any(line.split()[:1] == ["skipped"] and "step 50" in line and "never completed" in line for line in lines)
    assert any(line.split()[:1] == ["skipped"] and "step 40" in line and "does not match" in line for line in lines)
    assert "evaluated 1, already evaluated 3, other 2" in out
    assert _steps(night) == [10, 20, 30, 35]
    assert ",skipped," in _summary(night, out, "summary.csv")
    shutil.rmtree(incomplete)
    shutil.rmtree(corrupt)


def test_noise_is_not_a_regression_but_damaged_weights_are(night, capsys):
    # The newest checkpoint sampled with another seed: a new evaluation of the same
    # weights, compared with the previous one (same step), within the noise band.
    code, out = _nightly(night, capsys, "eval.seed=1", "nightly.policy=newest")
    assert code == 0, out
    assert "evaluated 1, already evaluated 0" in out
    assert _steps(night) == [10, 20, 30, 35, 35]
    (row,) = [line.split(",") for line in _summary(night, out, "summary.csv").splitlines()[1:]]
    assert row[2:4] == ["35", "evaluated"] and row[8] != "" and row[12] == ""  # compared (d_fid), no regression
    assert "nightly.regression" not in night.store.get_run(night.run_id).data.tags

    _new_checkpoint(night, 35, 45, damage=100.0)
    code, out = _nightly(night, capsys, "nightly.policy=newest")
    assert code == 3, out
    tag = night.store.get_run(night.run_id).data.tags["nightly.regression"]
    assert "step 45" in tag and "previous (step 35)" in tag and "fid" in tag
    assert "step 45: fid" in _summary(night, out, "summary.md").split("## Regressions")[1]


def test_two_jobs_started_at_once_evaluate_each_checkpoint_once(night):
    _new_checkpoint(night, 35, 50)
    _new_checkpoint(night, 35, 60)
    jobs = [_nightly_process(night, "nightly.nice=0") for _ in range(2)]  # the second night runs niced
    outputs = [job.communicate(timeout=600)[0] for job in jobs]
    assert [job.returncode for job in jobs] == [0, 0], outputs
    evaluated = [line.split()[3].rstrip(":") for text in outputs for line in text.splitlines() if line.startswith("  evaluated")]
    assert sorted(evaluated) == ["50", "60"], outputs  # "  evaluated <run> step N: ...", once each overall
    assert _steps(night) == [10, 20, 30, 35, 35, 45, 50, 60]
