"""A Ray Train worker (of 2) killed mid-training: the LDM stage restarts its worker group,
resumes from its latest checkpoint and finishes; MLflow's step sequence has no gaps and no
duplicates."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from tests.conftest import REPO_ROOT
from tests.platform.orchestration.test_sweep_e2e import _ldm_checkpoints, _runs, _store, _sweep_args
from tests.reliability.clusters import cmdline, descendants

pytestmark = pytest.mark.slow
STEPS = 40


def test_killed_ray_train_worker_restarts_and_resumes(tmp_path, tiny_shards):
    work = tmp_path / "work"
    args = _sweep_args(work, tiny_shards, "first_stage=kl_f4", f"ldm.train.steps={STEPS}", "ldm.train.log_every=1",
                       "ldm.train.ckpt_every=10", "ldm.train.num_workers=2", "eval.checkpoints=last",
                       "sweep.stages=[first_stage,ldm]")
    proc = subprocess.Popen([sys.executable, "-m", *args], cwd=REPO_ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        deadline = time.time() + 900
        while not _ldm_checkpoints(work) and time.time() < deadline and proc.poll() is None:
            time.sleep(0.3)
        workers = [pid for pid in descendants(proc.pid) if "RayTrainWorker" in cmdline(pid)]
        assert _ldm_checkpoints(work) and len(workers) == 2, (workers, proc.poll())
        killed_at = time.time()
        os.kill(workers[-1], signal.SIGKILL)  # a lost worker (a preempted GPU, a crashed process)
        output = proc.communicate(timeout=900)[0]
        recovered_s = time.time() - killed_at
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 0, output[-4000:]
    log = next(work.glob("stages/ldm/*/stage.log")).read_text()
    assert "resuming" in log + output  # the restarted group resumed from the checkpoint, not step 0
    store = _store(work)
    (ldm_run,) = _runs(store, "default", kind="stage", stage="ldm")
    steps = [step for step, _ in store.metric_history(ldm_run.info.run_id, "train/loss")]
    assert sorted(steps) == list(range(1, STEPS + 1)), steps
    assert ldm_run.info.status == "FINISHED"
    print(f"\nFIGURES train worker loss: recovered and finished {recovered_s:.0f} s after the kill")
