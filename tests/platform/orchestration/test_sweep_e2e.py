"""The mission's command end to end: real local Ray, real MLflow store/server, real shards."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from platform.tracking import PARENT_TAG, TrackingStore
from tests.conftest import REPO_ROOT, run_module
from tests.reliability.clusters import descendants, sigkill

pytestmark = pytest.mark.slow


def _sweep_args(work: Path, shards: tuple[Path, Path], *extra: str) -> list[str]:
    train, test = shards
    return ["platform.sweep", "scale=smoke", f"paths.work_dir={work}", f"data.train_shards={train}",
            f"data.eval_shards={test}", "cluster.num_cpus=2", *extra]


# Stages as short as the assertions allow (timings, not behaviour): two first-stage steps
# without rFID, N = 8 with one metric. Tests that check what is trained or measured say more.
_TINY_FIRST_STAGE = ["first_stage.train.steps=2", "first_stage.train.ckpt_every=2", "first_stage.rfid=false"]
_TINY_EVAL = ["eval.num_samples=8", "eval.batch_size=8", "eval.metrics=[fid]", "eval.uncertainty_repeats=2"]


def _runs(store: TrackingStore, experiment: str, **tags: str) -> list:
    query = " and ".join(f"tags.`{k}` = '{v}'" for k, v in tags.items())
    return store.runs(experiment, query)


def _store(work: Path) -> TrackingStore:
    return TrackingStore(f"sqlite:///{work / 'mlflow.db'}")


def test_downsample_factor_smoke_sweep_records_everything_and_reruns_cached(tmp_path, tiny_shards):
    work = tmp_path / "work"
    # Every stage of three of the experiment's six trials (pixel space, f = 4, and f = 32 with
    # its 1x1 latent; test_sweep_cli.py checks that the six compose), on the scale=smoke sizes
    # with shorter runs: first stages of 4 steps, LDMs of 10 with a checkpoint every 5 (two
    # curve points), N = 16 (the smoke kid_subset_size of 16 is then capped at N / 2).
    args = _sweep_args(work, tiny_shards, "+experiment=downsample_factor", "first_stage=identity,kl_f4,kl_f32",
                       "first_stage.train.steps=4",
                       "first_stage.train.ckpt_every=2", "ldm.train.steps=10", "ldm.train.ckpt_every=5",
                       "eval.num_samples=16", "eval.batch_size=16")
    out = run_module(*args, timeout=900)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert "summary" in out.stdout and out.stdout.count(" ok") >= 3

    store = _store(work)
    exp = "downsample_factor"
    (parent,) = _runs(store, exp, kind="sweep")
    trials = _runs(store, exp, kind="trial")
    assert sorted(int(t.data.params["first_stage.f"]) for t in trials) == [1, 4, 32]
    # Trials are top-level (the default table lists them), linked to their sweep run by tag.
    assert all(t.data.tags["sweep_run_id"] == parent.info.run_id and PARENT_TAG not in t.data.tags for t in trials)
    assert len(_runs(store, exp, kind="stage", stage="first_stage")) == 2  # f=1 trains nothing
    assert len(_runs(store, exp, kind="stage", stage="ldm")) == 3
    assert len(_runs(store, exp, kind="stage", stage="eval")) == 3
    for trial in trials:
        metrics, tags = trial.data.metrics, trial.data.tags
        for name in ("eval/fid", "eval/kid", "eval/precision", "eval/recall", "perf/train_img_per_s",
                     "perf/sample_img_per_s"):
            assert name in metrics, (name, trial.info.run_name)
        assert metrics["eval/n"] == 16 and metrics["eval/n_ref"] == 16  # N, logged beside every metric
        for name in ("fid", "fid_inf", "kid", "precision", "recall"):  # every metric has an interval
            assert metrics[f"eval/{name}_lo"] <= metrics[f"eval/{name}"] <= metrics[f"eval/{name}_hi"], name
            # Smoke models score P = R = 0 on every subset, so only the distances must vary.
            assert metrics[f"eval/{name}_std"] >= 0 if name in ("precision", "recall") else \
                metrics[f"eval/{name}_std"] > 0, name
        assert metrics["eval/kid_subset_size"] == 8 and metrics["eval/repeats"] == 10  # capped at N/2: subsets differ
        assert "eval/is" not in metrics  # no real fc layer offline: unavailable, never a number
        assert {"git_commit", "config_hash", "dataset_id", "sweep_id"} <= set(tags)
        if trial.data.params["first_stage.f"] != "1":
            assert "rec/psnr" in metrics and "rec/rfid" in metrics
        fid_curve = store.metric_history(trial.info.run_id, "eval/fid")
        assert len(fid_curve) == 2 and fid_curve[0][0] < fid_curve[1][0]  # one point per checkpoint
    artifacts = {a.path for a in store.client.list_artifacts(parent.info.run_id, "report")}
    assert {"report/fid_vs_steps.png", "report/fid_vs_throughput.png", "report/comparison.csv"} <= artifacts
    assert "IS" in out.stdout and "unavailable" in out.stdout
    assert " ±" in out.stdout and "FID: best" in out.stdout and "significantly worse:" in out.stdout

    # The report also runs on its own, from MLflow alone.
    report = run_module("platform.report", "+experiment=downsample_factor", f"paths.work_dir={work}")
    assert report.returncode == 0, report.stderr
    assert (work / "reports" / exp / "fid_vs_steps.png").stat().st_size > 1000
    rows = (work / "reports" / exp / "comparison.csv").read_text().splitlines()
    assert len(rows) == 4 and rows[0].startswith("trial,f,regulariser") and "eval/fid_lo" in rows[0]
    assert "FID: best" in (work / "reports" / exp / "comparison.md").read_text()

    # Rerunning the same command (same code) finds every stage finished and verified: nothing
    # trains, no run is added and no metric point is logged twice. A commit that changes code
    # a stage depends on re-runs it instead (test_sweep_trust.py).
    history = {(run.info.run_id, name): store.metric_history(run.info.run_id, name)
               for run in store.runs(exp) for name in run.data.metrics}
    before = len(store.runs(exp))
    again = run_module(*args, timeout=600)
    assert again.returncode == 0, again.stderr[-3000:]
    assert len(store.runs(exp)) == before
    assert {(run.info.run_id, name): store.metric_history(run.info.run_id, name)
            for run in store.runs(exp) for name in run.data.metrics} == history


def _ldm_checkpoints(work: Path) -> list[Path]:
    return sorted(work.glob("stages/ldm/*/checkpoints/step-*"))


def _start_until_ldm_checkpoint(args: list[str], newer_than: int) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-m", *args], cwd=REPO_ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    work = Path(next(a for a in args if a.startswith("paths.work_dir=")).split("=", 1)[1])
    deadline = time.time() + 600
    while len(_ldm_checkpoints(work)) <= newer_than and time.time() < deadline and proc.poll() is None:
        time.sleep(0.3)
    if len(_ldm_checkpoints(work)) <= newer_than:
        os.killpg(proc.pid, signal.SIGKILL)
        raise AssertionError(proc.communicate(timeout=60)[0][-3000:])
    return proc


def _statuses(store: TrackingStore) -> dict[str, str]:
    return {run.info.run_name: run.info.status for run in store.runs("default")}


def test_killed_sweep_resumes_ldm_from_its_checkpoint(figures, tmp_path, tiny_shards):
    """`kill PID` (SIGTERM, as SLURM/Kubernetes/systemd send it), then SIGKILL, during the
    LDM stage; the rerun ends the orphaned runs and resumes: no duplicate runs or points,
    no run left RUNNING, the first stage not retrained (issue #11)."""
    work = tmp_path / "work"
    steps_total = 50  # checkpoints every 10: room for the two kills and a worker outliving each
    args = _sweep_args(work, tiny_shards, "first_stage=kl_f4", f"ldm.train.steps={steps_total}", "ldm.train.ckpt_every=10",
                       "eval.checkpoints=last", *_TINY_FIRST_STAGE, *_TINY_EVAL)
    proc = _start_until_ldm_checkpoint(args, newer_than=0)
    sent = time.time()
    proc.send_signal(signal.SIGTERM)  # the driver only: Ray's own handler used to abort it
    output = proc.communicate(timeout=180)[0]
    stop_s = time.time() - sent
    assert proc.returncode == 130 and "SIGTERM: stopping" in output, output[-3000:]
    assert "Aborted" not in output and "*** SIG" not in output
    statuses = _statuses(_store(work))
    assert "RUNNING" not in statuses.values(), statuses
    assert [s for name, s in statuses.items() if name.startswith("first_stage")] == ["FINISHED"]
    first_record = next(work.glob("stages/first_stage/*/record.json")).read_text()

    # SIGKILL: nothing runs in the driver, so its runs stay RUNNING until a rerun looks.
    proc = _start_until_ldm_checkpoint(args, newer_than=len(_ldm_checkpoints(work)))
    # The driver and the local cluster it started, at once: Ray's processes are not all in the
    # driver's process group, and an LDM worker that outlived its driver by a few seconds
    # wrote one more checkpoint after killed_at was read (seen on a quiet machine).
    cluster = descendants(proc.pid)
    os.killpg(proc.pid, signal.SIGKILL)
    sigkill(cluster)
    proc.communicate(timeout=60)
    killed_at = int(_ldm_checkpoints(work)[-1].name.split("-")[1])
    assert killed_at < steps_total and "RUNNING" in _statuses(_store(work)).values()

    started = time.time()
    out = run_module(*args, timeout=900)
    rerun_s = time.time() - started
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert "runs left RUNNING by a stopped sweep were ended" in out.stdout
    log = next(work.glob("stages/ldm/*/stage.log")).read_text()
    assert f"resuming" in log and f"from step {killed_at}" in log
    assert next(work.glob("stages/first_stage/*/record.json")).read_text() == first_record  # not retrained
    store = _store(work)
    statuses = _statuses(store)
    assert set(statuses.values()) == {"FINISHED"} and len(statuses) == 5, statuses  # sweep, trial, 3 stages
    (ldm_run,) = _runs(store, "default", kind="stage", stage="ldm")
    steps = sorted(step for step, _ in store.metric_history(ldm_run.info.run_id, "train/loss"))
    # Three drivers logged the steps, the last two re-logging those after their checkpoint:
    # each step is in the store once, none is missing.
    assert steps == list(range(steps[0], steps_total + 1, steps[1] - steps[0])) and steps[0] <= 5, steps
    assert len(_runs(store, "default", kind="trial")) == 1 and len(_runs(store, "default", kind="sweep")) == 1
    figures(f"signals: SIGTERM stopped the driver in {stop_s:.1f} s; rerun after SIGKILL "
            f"(resumed from step {killed_at}) finished in {rerun_s:.0f} s; {len(steps)} train/loss points, 0 duplicates")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_a_failing_trial_fails_alone(tmp_path, tiny_shards):
    train, test = tiny_shards
    broken = tmp_path / "broken"
    shutil.copytree(train, broken)
    manifest = json.loads((broken / "manifest.json").read_text())
    manifest["dataset_id"] = "broken-" + manifest["dataset_id"]  # its own stage keys
    (broken / "manifest.json").write_text(json.dumps(manifest))
    shard = sorted(broken.glob("*.tar"))[0]
    shard.write_bytes(shard.read_bytes()[: shard.stat().st_size // 3])  # a truncated shard
    work = tmp_path / "work"
    args = _sweep_args(work, (train, test), "first_stage=kl_f4", f"data.train_shards={train},{broken}",
                       "eval.checkpoints=last", *_TINY_FIRST_STAGE, "ldm.train.steps=2", "ldm.train.ckpt_every=2",
                       *_TINY_EVAL)
    out = run_module(*args, timeout=900)
    assert out.returncode == 1
    text = out.stdout + out.stderr
    assert "FAILED (first_stage)" in text and " ok" in text
    assert "failed in first_stage" in text and "stage.log" in text and shard.name in text


def test_dead_tracking_server_fails_before_ray_starts(figures, tmp_path, tiny_shards):
    """With the platform's short client retries (no env override); the URL's credentials
    are never printed (issue #11)."""
    uri = f"http://alice:s3cr3t-pw@127.0.0.1:{_free_port()}/?token=t0k3n"
    started = time.time()
    out = run_module(*_sweep_args(tmp_path / "w", tiny_shards, f"tracking.uri='{uri}'"), timeout=300)
    elapsed = time.time() - started
    text = out.stdout + out.stderr
    assert out.returncode == 2
    assert "cannot start the sweep" in out.stderr and "mlflow server" in out.stderr and "127.0.0.1" in out.stderr
    assert "Started a local Ray instance" not in text
    assert "s3cr3t-pw" not in text and "t0k3n" not in text
    # Seconds, not MLflow's ~4 minutes of retries: bounded in test_writer_outage.py, where no
    # process start-up (tens of seconds on a loaded box) blurs the figure.
    figures(f"dead server at start: refused after {elapsed:.0f} s (process start included)")
