"""Driver leases tell a dead sweep's runs from a live one's (real flock, real SQLite store)."""

from __future__ import annotations

import subprocess
import sys
import textwrap

from platform.orchestration.ownership import LEASE_TAG, DriverLease, close_orphaned_runs, owner_alive
from platform.orchestration.records import stage_dir, write_record
from platform.tracking import TrackingStore
from tests.conftest import REPO_ROOT


def _lease_of_a_killed_process(work_dir) -> str:
    """Take a lease in another process and SIGKILL it (the kernel drops its lock)."""
    code = f"""
        import os, signal
        from platform.orchestration.ownership import DriverLease
        lease = DriverLease({str(work_dir)!r})
        print(lease.path, flush=True)
        os.kill(os.getpid(), signal.SIGKILL)
    """
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=REPO_ROOT, capture_output=True,
                          text=True, timeout=60)
    return proc.stdout.strip()


def test_a_lease_is_alive_while_held_and_dead_after_its_process_is_killed(tmp_path):
    lease = DriverLease(tmp_path)
    assert owner_alive(str(lease.path)) is True
    dead = _lease_of_a_killed_process(tmp_path)
    assert dead and owner_alive(dead) is False
    lease.release()
    assert owner_alive(str(lease.path)) is False  # released without ending the run: gone
    assert owner_alive("/nonexistent-host-dir/leases/x.lock") is None  # cannot be judged here
    assert owner_alive(None) is None


def test_rerun_ends_orphans_and_leaves_live_and_unknown_runs(tmp_path, new_sqlite_store):
    store = TrackingStore(new_sqlite_store(tmp_path / "mlflow.db"))
    exp = store.ensure_experiment("orphans")
    live = DriverLease(tmp_path)
    dead = _lease_of_a_killed_process(tmp_path)
    runs = {
        "live": store.open_run(exp, "live", {"kind": "trial", "trial_key": "a"}),
        "dead": store.open_run(exp, "dead", {"kind": "trial", "trial_key": "b"}),
        "unknown": store.open_run(exp, "old", {"kind": "trial", "trial_key": "c"}),
        "recorded": store.open_run(exp, "ldm", {"kind": "stage", "stage_key": "k1"}),
        # An earlier attempt of the same stage key, replaced by "recorded": not the run that finished.
        "replaced": store.open_run(exp, "ldm", {"kind": "stage", "stage_key": "k1", "attempt": "0"}),
    }
    store.set_tags(runs["live"], {LEASE_TAG: str(live.path)})
    store.set_tags(runs["dead"], {LEASE_TAG: dead})
    # A stage that finished while its end_run was lost, under a live owner even.
    store.set_tags(runs["recorded"], {LEASE_TAG: str(live.path), "stage": "ldm"})
    store.set_tags(runs["replaced"], {LEASE_TAG: dead, "stage": "ldm", "stage_key": "k1"})
    directory = stage_dir(tmp_path, "ldm", "k1")
    directory.mkdir(parents=True)
    write_record(directory, {"stage": "ldm", "key": "k1", "run_id": runs["recorded"]})

    ended = close_orphaned_runs(store, exp, tmp_path)
    assert ended == {runs["dead"]: "KILLED", runs["recorded"]: "FINISHED", runs["replaced"]: "KILLED"}
    status = {name: store.client.get_run(run).info.status for name, run in runs.items()}
    assert status == {"live": "RUNNING", "dead": "KILLED", "unknown": "RUNNING", "recorded": "FINISHED",
                      "replaced": "KILLED"}
    live.release()
