"""Leases on evaluations: two jobs never evaluate the same thing at the same time.

A lease is an exclusive, non-blocking ``flock`` on ``<directory>/<name>.lock``. The
kernel drops it when the holder exits for any reason (``kill -9`` included), so a
killed job never leaves a stale lease behind and the next job simply takes it; there
is no expiry to tune. ``flock`` is per host, and on NFS per client host (Linux NFSv4
maps it to a byte-range lock), which covers one scheduler host or a CronJob whose pods
mount the same volume. The lease never touches the training stage's own lock.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path
from typing import Iterator, Optional


@contextlib.contextmanager
def lease(directory: Path | str, name: str) -> Iterator[bool]:
    """Try to hold the lease ``name``; yields True when held, False when another job has it.

    Args:
        directory: where lease files live (created if needed; shared by the jobs).
        name: what is leased, e.g. an evaluation identity (a file-name-safe string).
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    handle = open(directory / f"{name}.lock", "a+")
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        handle.seek(0)
        handle.truncate()
        handle.write(f"{os.getpid()}\n")  # who holds it, for a person looking at the file
        handle.flush()
        try:
            yield True
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
    finally:
        handle.close()


def holder(directory: Path | str, name: str) -> Optional[int]:
    """The pid written by the last holder of ``name`` (informational), or None."""
    path = Path(directory) / f"{name}.lock"
    try:
        return int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None
