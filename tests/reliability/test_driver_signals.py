"""The sweep driver stopped by SIGTERM, then by SIGKILL, during an LDM stage; reruns recover.

Real local Ray cluster, real SQLite store, real shards. Afterwards: no duplicate runs, no
run left RUNNING, the finished first stage not retrained.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT, run_module
from tests.platform.orchestration.test_sweep_e2e import _ldm_checkpoints, _runs, _store, _sweep_args

pytestmark = pytest.mark.slow


def _start_and_wait_for_ldm_checkpoint(args: list[str], newer_than: int) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-m", *args], cwd=REPO_ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    work = Path(next(a for a in args if a.startswith("paths.work_dir=")).split("=", 1)[1])
    deadline = time.time() + 600
    while time.time() < deadline and proc.poll() is None:
        if len(_ldm_checkpoints(work)) > newer_than:
            return proc
        time.sleep(0.5)
    raise AssertionError(proc.communicate(timeout=60)[0][-3000:])


def _statuses(work: Path) -> list[tuple[str, str]]:
    return sorted((run.info.run_name, run.info.status) for run in _store(work).runs("default"))


def test_sigterm_then_sigkill_during_ldm_then_rerun_completes_cleanly(tmp_path, tiny_shards):
    work = tmp_path / "work"
    args = _sweep_args(work, tiny_shards, "first_stage=kl_f4", "ldm.train.steps=60", "ldm.train.ckpt_every=10",
                       "eval.checkpoints=last")

    # 1. `kill PID` (what SLURM, Kubernetes and systemd send) during the LDM stage.
    proc = _start_and_wait_for_ldm_checkpoint(args, newer_than=0)
    sent = time.time()
    proc.send_signal(signal.SIGTERM)
    output = proc.communicate(timeout=180)[0]
    stop_s = time.time() - sent
    assert proc.returncode == 130, output[-3000:]
    assert "SIGTERM: stopping" in output and "Aborted" not in output and "*** SIG" not in output
    statuses = dict(_statuses(work))
    assert "RUNNING" not in statuses.values(), statuses
    assert [s for name, s in statuses.items() if name.startswith("first_stage")] == ["FINISHED"]
    assert all(s == "KILLED" for name, s in statuses.items() if not name.startswith("first_stage"))
    first_record = next(work.glob("stages/first_stage/*/record.json")).read_text()

    # 2. SIGKILL (nothing can run): runs stay RUNNING until the next sweep looks.
    proc = _start_and_wait_for_ldm_checkpoint(args, newer_than=len(_ldm_checkpoints(work)))
    os.killpg(proc.pid, signal.SIGKILL)  # the driver and the local cluster it started
    proc.communicate(timeout=60)
    assert "RUNNING" in dict(_statuses(work)).values()

    # 3. The rerun ends the orphans, resumes the LDM and finishes everything once.
    started = time.time()
    out = run_module(*args, timeout=900)
    recover_s = time.time() - started
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert "runs left RUNNING by a stopped sweep were ended" in out.stdout
    statuses = _statuses(work)
    names = [name for name, _ in statuses]
    assert len(names) == len(set(names)) == 5, statuses  # sweep, trial, first stage, ldm, eval
    assert {status for _, status in statuses} == {"FINISHED"}
    assert next(work.glob("stages/first_stage/*/record.json")).read_text() == first_record  # not retrained
    (ldm_run,) = _runs(_store(work), "default", kind="stage", stage="ldm")
    steps = [s for s, _ in _store(work).metric_history(ldm_run.info.run_id, "train/loss")]
    assert max(steps) == 60
    print(f"\nFIGURES signals: SIGTERM stop {stop_s:.1f} s; rerun after SIGKILL {recover_s:.0f} s")
