"""A real ``mlflow server`` stopped during LDM training for longer than the client's retry
window, then restarted: every point logged during the outage reaches the store, once."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from platform.tracking import TrackingStore
from tests.conftest import REPO_ROOT
from tests.platform.orchestration.test_sweep_e2e import _ldm_checkpoints, _runs, _sweep_args
from tests.reliability.clusters import MlflowServer

pytestmark = pytest.mark.slow

OUTAGE_S = 30  # the client gives up after ~3 s (2 retries, backoff factor 1): 10x that
STEPS = 80


@pytest.fixture
def server(tmp_path):
    server = MlflowServer(tmp_path / "mlflow")
    server.start()
    yield server
    server.stop()


def test_points_logged_during_a_server_outage_all_arrive_once(tmp_path, tiny_shards, server):
    work = tmp_path / "work"
    args = _sweep_args(work, tiny_shards, "first_stage=kl_f4", f"ldm.train.steps={STEPS}", "ldm.train.log_every=1",
                       "ldm.train.ckpt_every=10", "eval.checkpoints=last", f"tracking.uri={server.url}")
    proc = subprocess.Popen([sys.executable, "-m", *args], cwd=REPO_ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        deadline = time.time() + 600
        while not _ldm_checkpoints(work) and time.time() < deadline and proc.poll() is None:
            time.sleep(0.3)
        assert _ldm_checkpoints(work), proc.communicate()[0][-3000:]
        server.stop()
        down_at, checkpoints_before = time.time(), len(_ldm_checkpoints(work))
        time.sleep(OUTAGE_S)
        trained_while_down = len(_ldm_checkpoints(work)) - checkpoints_before
        server.start()
        output = proc.communicate(timeout=900)[0]
        back_to_done_s = time.time() - down_at - OUTAGE_S
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, output[-3000:]
    assert "spooling writes" in output and "spooled writes delivered" in output
    assert trained_while_down >= 1  # training went on without the server

    store = TrackingStore(server.url)
    (ldm_run,) = _runs(store, "default", kind="stage", stage="ldm")
    steps = [step for step, _ in store.metric_history(ldm_run.info.run_id, "train/loss")]
    assert sorted(steps) == list(range(1, STEPS + 1)), steps  # none lost, none twice
    assert {run.info.status for run in store.runs("default")} == {"FINISHED"}
    print(f"\nFIGURES outage: {OUTAGE_S} s down, {trained_while_down * 10} steps trained meanwhile, "
          f"{len(steps)}/{STEPS} points, sweep done {back_to_done_s:.0f} s after the server returned")
