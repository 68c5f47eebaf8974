"""A sweep submitted as a Ray Job to a ``ray start --head`` cluster (the driver lives on the
cluster: a laptop may sleep), and one of its LDM's two Ray Train workers killed mid-training:
the worker group restarts from the latest checkpoint, the job succeeds, and its runs land in
the store with a step sequence that has no gaps and no duplicates (issue #11)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from platform.tracking import TrackingStore
from tests.conftest import REPO_ROOT
from tests.platform.orchestration.test_sweep_e2e import _TINY_FIRST_STAGE, _ldm_checkpoints, _runs
from tests.reliability.clusters import ray_start_head, ray_train_workers

pytestmark = pytest.mark.slow
STEPS = 30


def test_ray_job_sweep_survives_a_killed_ray_train_worker(figures, tmp_path, tiny_shards):
    train, test = tiny_shards
    work = tmp_path / "work"
    store_uri = f"sqlite:///{work / 'mlflow.db'}"
    with ray_start_head(num_cpus=2) as head:
        # As the README says: the entrypoint names the project's interpreter; paths are absolute.
        entrypoint = [sys.executable, "-m", "platform.sweep", "scale=smoke", "first_stage=kl_f4",
                      "sweep.stages=[first_stage,ldm]", "ldm.train.num_workers=2", f"ldm.train.steps={STEPS}",
                      "ldm.train.log_every=1", "ldm.train.ckpt_every=10", *_TINY_FIRST_STAGE, f"paths.work_dir={work}",
                      f"tracking.uri={store_uri}", f"data.train_shards={train}", f"data.eval_shards={test}"]
        ray_cli = str(Path(sys.executable).parent / "ray")

        def ray_job(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
            return subprocess.run([ray_cli, "job", *args], cwd=REPO_ROOT, env=head["env"], capture_output=True,
                                  text=True, timeout=timeout)

        # The head's job agent may need a while after `ray start` ("No available agent"): retry.
        deadline = time.time() + 180
        while True:
            submitted = ray_job("submit", "--no-wait", "--submission-id", "sweep-1", "--working-dir",
                                str(REPO_ROOT), "--", *entrypoint)
            if submitted.returncode == 0 or time.time() > deadline:
                break
            time.sleep(3)
        assert submitted.returncode == 0, submitted.stdout[-2000:] + submitted.stderr[-2000:]

        def status() -> str:  # the CLI says "Job 'sweep-1' succeeded", the API SUCCEEDED
            answer = ray_job("status", "sweep-1")
            return (answer.stdout + answer.stderr).upper()

        def finished() -> bool:
            return any(word in status() for word in ("SUCCEEDED", "FAILED", "STOPPED"))

        deadline, polls = time.time() + 1200, 0  # generous: a loaded 2-core box
        while not _ldm_checkpoints(work) and time.time() < deadline and (polls % 20 or not finished()):
            time.sleep(0.5)  # the Ray CLI takes seconds of CPU: ask it about the job every 10 s only
            polls += 1
        workers = ray_train_workers(head["root"])
        assert _ldm_checkpoints(work) and len(workers) == 2, (workers, ray_job("logs", "sweep-1").stdout[-4000:])
        killed_at, checkpoint_at_kill = time.time(), int(_ldm_checkpoints(work)[-1].name.split("-")[1])
        os.kill(workers[-1], signal.SIGKILL)  # a lost worker: a preempted GPU, a crashed process
        # `logs --follow` returns when the job ends: no polling (each `ray job status` costs seconds of CPU).
        followed = ray_job("logs", "--follow", "sweep-1", timeout=900)
        recovered_s = time.time() - killed_at
        final = status()
        output = followed.stdout
        # Ray Train workers print to the cluster's worker logs, not to the stage's stage.log.
        worker_logs = "".join(path.read_text(errors="replace")
                              for path in Path(head["root"]).glob("ray/session_*/logs/worker-*.out"))
    assert "SUCCEEDED" in final, output[-4000:]
    assert "joining the Ray cluster at" in output  # the job's driver joined, it started none
    # The restarted group resumed from a checkpoint at least as late as the one before the kill.
    resumed = [int(step) for step in re.findall(r"\[ldm\] resuming \S+ from step (\d+)", worker_logs)]
    assert resumed and min(resumed) >= checkpoint_at_kill, worker_logs[-3000:]
    store = TrackingStore(store_uri)
    runs = store.runs("default")
    assert sorted(run.data.tags.get("kind") for run in runs) == ["stage", "stage", "sweep", "trial"]
    assert {run.info.status for run in runs} == {"FINISHED"}
    (ldm_run,) = _runs(store, "default", kind="stage", stage="ldm")
    steps = sorted(step for step, _ in store.metric_history(ldm_run.info.run_id, "train/loss"))
    assert steps == list(range(1, STEPS + 1)), steps
    figures(f"ray job + train worker loss: killed after step {checkpoint_at_kill}, resumed from "
            f"{min(resumed)}; job finished {recovered_s:.0f} s after the kill; {len(steps)}/{STEPS} points, "
            f"0 duplicates; {len(runs)} runs FINISHED")
