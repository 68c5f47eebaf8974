"""``python -m platform.nightly`` after a real smoke sweep (real Ray, MLflow store, shards).

One sweep is shared by the module: two identity LDM trials of ``downsample_factor`` (no
first stage to train). The tests run in file order, each adding the checkpoints it needs
the way training writes them (``save_checkpoint``), so each night has something new.
"""

from __future__ import annotations

import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from platform.checkpoint import TENSORS_FILE, load_checkpoint, save_checkpoint
from platform.tracking import TrackingStore
from tests.conftest import REPO_ROOT, run_module

pytestmark = [pytest.mark.slow, pytest.mark.timeout(3600)]  # minutes on a quiet machine; a loaded one is slower
EXPERIMENT = "downsample_factor"


@pytest.fixture(scope="module")
def night(tmp_path_factory, tiny_shards) -> SimpleNamespace:
    work = tmp_path_factory.mktemp("nightly") / "work"
    train, test = tiny_shards
    common = ["scale=smoke", f"paths.work_dir={work}", f"data.train_shards={train}", f"data.eval_shards={test}"]
    # Smoke lr is 2e-4: that trial is also found from the experiment's own trials; the 3e-4 one
    # only through its MLflow trial run (a trial added on an earlier sweep's command line).
    out = run_module("platform.sweep", f"+experiment={EXPERIMENT}", "first_stage=identity", "ldm.train.lr=2e-4,3e-4",
                     "sweep.stages=[first_stage,ldm]", "cluster.num_cpus=2", *common, timeout=3000)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    store = TrackingStore(f"sqlite:///{work / 'mlflow.db'}")
    trials = sorted(store.runs(EXPERIMENT, "tags.kind = 'trial'"), key=lambda r: r.data.params["ldm.train.lr"])
    assert len(trials) == 2
    dirs = [work / "stages" / "ldm" / t.data.tags["ldm_key"] / "checkpoints" for t in trials]
    return SimpleNamespace(work=work, common=common, store=store, run_ids=[t.info.run_id for t in trials], dirs=dirs)


def _nightly(night: SimpleNamespace, *extra: str) -> subprocess.CompletedProcess:
    return run_module("platform.nightly", f"+experiment={EXPERIMENT}", *night.common, *extra, timeout=3000)


def _steps(night: SimpleNamespace, index: int, key: str = "eval/fid") -> list[int]:
    return [step for step, _ in night.store.metric_history(night.run_ids[index], key)]


def _new_checkpoint(directory: Path, source_step: int, step: int, damage: float = 0.0) -> Path:
    """What training writes next: the weights of ``source_step`` at ``step``; ``damage`` shifts
    the denoiser's output bias (its noise prediction), which measurably worsens FID."""
    states, meta, _ = load_checkpoint(directory / f"step-{source_step:08d}")
    for weights in (states["model"], states["ema"]["shadow"]):
        weights["unet.conv_out.bias"] = weights["unet.conv_out.bias"] + damage
    return save_checkpoint(directory, step, states, meta)


def _nightly_run(night: SimpleNamespace):
    (run,) = night.store.runs("nightly", "tags.kind = 'nightly'")
    return run


def test_every_checkpoint_is_evaluated_once_and_a_second_night_does_nothing(night):
    out = _nightly(night)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert "evaluated 4, already evaluated 0" in out.stdout
    for index, run_id in enumerate(night.run_ids):
        assert _steps(night, index) == [15, 30]  # at the checkpoints' training steps, on the trial run
        run = night.store.get_run(run_id)
        assert run.data.metrics["eval/n"] == 32 and "eval/kid" in run.data.metrics
        assert sum(tag.startswith("eval_identity.") for tag in run.data.tags) == 2
        assert run.data.tags["eval.detector"].startswith("inception-") and run.data.tags["eval.weights_source"]
    nightly = _nightly_run(night)
    assert {"date", "git_commit", "nightly_scope"} <= set(nightly.data.tags)
    summary = night.store.client.download_artifacts(nightly.info.run_id, "summary.csv", str(night.work))
    lines = Path(summary).read_text().splitlines()
    assert lines[0].startswith("experiment,run,step,status,fid,kid,precision,recall,d_fid") and len(lines) == 5

    before_cpu = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.time()
    again = _nightly(night)
    after_cpu = resource.getrusage(resource.RUSAGE_CHILDREN)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "nothing new" in again.stdout and "already evaluated 4" in again.stdout
    # Under 30 s on a quiet 2-core machine; CPU seconds are what contention cannot inflate.
    cpu = after_cpu.ru_utime + after_cpu.ru_stime - before_cpu.ru_utime - before_cpu.ru_stime
    assert cpu < 30, (cpu, time.time() - started)
    assert [_steps(night, i) for i in (0, 1)] == [[15, 30], [15, 30]]


def test_platform_evaluate_recognises_what_the_night_evaluated(night):
    out = run_module("platform.evaluate", f"evaluate.run_id={night.run_ids[1]}", *night.common, timeout=3000)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert out.stdout.count("done") == 2 and "evaluated" not in out.stdout


def test_training_continued_only_the_new_checkpoint_is_evaluated(night):
    _new_checkpoint(night.dirs[0], 30, 45)
    out = _nightly(night)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert "evaluated 1, already evaluated 4" in out.stdout
    assert _steps(night, 0) == [15, 30, 45] and _steps(night, 1) == [15, 30]


def test_incomplete_and_corrupt_checkpoints_are_skipped_and_reported(night):
    incomplete = night.dirs[0] / "step-00000050"
    shutil.copytree(night.dirs[0] / "step-00000045", incomplete)
    (incomplete / "digest.json").unlink()  # as a writer that died before its completion marker
    corrupt = _new_checkpoint(night.dirs[1], 30, 40)
    with open(corrupt / TENSORS_FILE, "r+b") as handle:
        handle.seek(corrupt.joinpath(TENSORS_FILE).stat().st_size // 2)
        handle.write(b"\x00" * 64)
    _new_checkpoint(night.dirs[1], 30, 35)
    out = _nightly(night)
    assert out.returncode == 4, out.stdout[-3000:] + out.stderr[-3000:]
    lines = out.stdout.splitlines()
    assert any("skipped" in line and "step 50" in line and "never completed" in line for line in lines)
    assert any("skipped" in line and "step 40" in line and "does not match" in line for line in lines)
    assert _steps(night, 1) == [15, 30, 35] and 50 not in _steps(night, 0)
    shutil.rmtree(incomplete)
    shutil.rmtree(corrupt)


def test_noise_is_not_a_regression_but_damaged_weights_are(night):
    # The same checkpoints sampled with another seed: a new evaluation, within the noise band.
    out = _nightly(night, "eval.seed=1", "nightly.policy=newest")
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert "evaluated 2" in out.stdout and "regression" not in out.stdout.split("[nightly")[-1]
    assert all("nightly.regression" not in night.store.get_run(r).data.tags for r in night.run_ids)

    _new_checkpoint(night.dirs[0], 45, 60, damage=3.0)
    out = _nightly(night, "nightly.policy=newest")
    assert out.returncode == 3, out.stdout[-3000:] + out.stderr[-3000:]
    tag = night.store.get_run(night.run_ids[0]).data.tags["nightly.regression"]
    assert "step 60" in tag and "previous (step 45)" in tag
    assert "nightly.regression" not in night.store.get_run(night.run_ids[1]).data.tags
    summary = night.store.client.download_artifacts(_nightly_run(night).info.run_id, "summary.md", str(night.work))
    assert "step 60: fid" in Path(summary).read_text().split("## Regressions")[1]


def test_two_jobs_started_at_once_evaluate_each_checkpoint_once(night):
    _new_checkpoint(night.dirs[0], 45, 70)
    _new_checkpoint(night.dirs[1], 35, 70)
    command = [sys.executable, "-m", "platform.nightly", f"+experiment={EXPERIMENT}", *night.common,
               "nightly.policy=newest"]
    jobs = [subprocess.Popen(command, cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            for _ in range(2)]
    outputs = [job.communicate(timeout=3000)[0] for job in jobs]
    assert [job.returncode for job in jobs] == [0, 0], outputs
    evaluated = sum(line.strip().startswith("evaluated") for text in outputs for line in text.splitlines())
    assert evaluated == 2, outputs
    for index in (0, 1):
        assert _steps(night, index, "eval/n").count(70) == 1
