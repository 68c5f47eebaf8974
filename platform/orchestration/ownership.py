"""Who owns a RUNNING MLflow run: a driver lease, checked by a rerun instead of a guess by age.

Every sweep driver holds an exclusive ``flock`` on ``<work_dir>/leases/<id>.lock`` for its
whole life and tags each run it opens with that file's path. The kernel drops the lock
when the process dies, however it dies (SIGKILL, a crash, a lost node), so a rerun can
tell a run whose driver is gone (lock free, or file gone) from one another live sweep is
still writing (lock held), without clocks or timeouts. Runs whose lease file is on a
filesystem this machine cannot see are left alone: their owner cannot be judged from here.
"""

from __future__ import annotations

import errno
import fcntl
import uuid
from pathlib import Path
from typing import Any, Optional

from platform.orchestration.records import RecordError, read_record, stage_dir

LEASE_TAG = "platform.lease"
LEASE_DIR = "leases"


class DriverLease:
    """The lease this process holds while it drives a sweep; ``release()`` gives it up."""

    def __init__(self, work_dir: Path) -> None:
        directory = Path(work_dir).resolve() / LEASE_DIR
        directory.mkdir(parents=True, exist_ok=True)
        self.path = directory / f"{uuid.uuid4().hex}.lock"
        # Python opens files non-inheritable, so the Ray processes this driver starts do not
        # keep the lock alive after the driver dies.
        self._handle = open(self.path, "w")
        fcntl.flock(self._handle, fcntl.LOCK_EX | fcntl.LOCK_NB)

    def release(self) -> None:
        if self._handle.closed:
            return
        self.path.unlink(missing_ok=True)
        self._handle.close()  # closing drops the lock


def owner_alive(lease_path: Optional[str]) -> Optional[bool]:
    """True: the lease's driver is alive; False: it is gone; None: cannot be judged here."""
    if not lease_path:
        return None
    path = Path(lease_path)
    if not path.parent.is_dir():
        return None  # another machine's work_dir
    try:
        handle = open(path, "r")
    except FileNotFoundError:
        return False  # released (or cleaned up) without ending this run
    with handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError as error:
            if error.errno in (errno.EAGAIN, errno.EACCES):
                return True
            raise
    # A dead driver's file stays (a few bytes): unlinking it here could race with a new
    # driver that has created its file but not yet locked it.
    return False


def has_record(work_dir: Path, stage: str, key: str, run_id: Optional[str] = None) -> bool:
    """Whether the stage finished (a readable record), and when ``run_id`` is given, finished
    in that run: a replaced attempt's run (same stage key, older run) did not finish it.
    A damaged record counts as not finished."""
    try:
        record = read_record(stage_dir(work_dir, stage, key))
    except RecordError:
        return False
    return record is not None and (run_id is None or record.get("run_id") == run_id)


def close_orphaned_runs(store: Any, experiment_id: str, work_dir: Path) -> dict[str, str]:
    """End the experiment's RUNNING runs that nobody drives any more.

    A stage run that wrote its stage's finished record (the record names the run) is ended
    FINISHED: its own ``end_run`` was lost. Any other run whose driver lease is dead is
    ended KILLED, including an earlier attempt of a stage that another run finished. Runs
    with a live or unknown owner are left alone. Returns run id -> the status it was given.

    Args:
        store: a ``platform.tracking.TrackingStore``.
        experiment_id: the MLflow experiment to scan.
        work_dir: the sweep's work directory (stage records live under it).
    """
    ended: dict[str, str] = {}
    for run in store.client.search_runs([experiment_id], "attributes.status = 'RUNNING'", max_results=5000):
        tags = run.data.tags
        stage, key = tags.get("stage"), tags.get("stage_key")
        if stage and key and has_record(work_dir, stage, key, run.info.run_id):
            status = "FINISHED"
        elif owner_alive(tags.get(LEASE_TAG)) is False:
            status = "KILLED"
        else:
            continue
        store.end_run(run.info.run_id, status)
        ended[run.info.run_id] = status
    return ended
