"""A durable, ordered queue of tracking writes that the store refused (an outage).

One JSON line per write, appended and fsynced before the write is reported as taken, so
a crash loses nothing that was spooled. Each spool file belongs to one writer, which
holds an exclusive ``flock`` on it; a new writer adopts the files of dead writers for the
same store and replays them first, so a sweep killed during an outage delivers its
points on the next run. Replays are idempotent: metrics keep the timestamp of their first
attempt (MLflow stores (key, step, timestamp, value) once), params already present are
skipped, tags and artifacts overwrite themselves.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import uuid
from pathlib import Path
from typing import Any


ADOPT_LOCK = ".adopt.lock"


def spool_dir(work_dir: Path | str, uri: str) -> Path:
    """Where the spools of one tracking store live (the URI is hashed: it may hold secrets)."""
    return Path(work_dir).resolve() / "spool" / hashlib.sha256(uri.encode()).hexdigest()[:16]


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except FileNotFoundError:
        return 0.0


def _plain(value: Any) -> Any:
    """numpy scalars (steps, metric values) as Python numbers."""
    if hasattr(value, "item"):
        return value.item()
    raise TypeError(f"cannot spool a {type(value).__name__}")


class Spool:
    """This writer's spool file plus the adopted spools of dead writers.

    ``<id>.jsonl`` only grows while writes are pending; ``<id>.done`` (replaced atomically)
    counts its lines already delivered. When everything is delivered the count is reset
    first and the file truncated second, so a crash between the two replays (harmlessly)
    rather than skips.
    """

    def __init__(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.entries: list[dict[str, Any]] = []
        self._lines = 0
        self._done = 0
        # Writers starting together take turns here: each creates its file locked under a
        # name adoption ignores, then publishes it by a rename (the lock stays with the
        # file), and adopts dead writers' spools while no other writer can adopt them too.
        with open(directory / ADOPT_LOCK, "a") as turn:
            fcntl.flock(turn, fcntl.LOCK_EX)
            name = uuid.uuid4().hex
            hidden = directory / f".{name}.new"
            self._handle = open(hidden, "a")
            fcntl.flock(self._handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            self.path = directory / f"{name}.jsonl"
            os.replace(hidden, self.path)
            self._adopt(directory)

    @staticmethod
    def _done_path(path: Path) -> Path:
        return path.with_suffix(".done")

    def _adopt(self, directory: Path) -> None:
        """Move the undelivered writes of dead writers' spools, oldest first, into this one."""
        for other in sorted(directory.glob("*.jsonl"), key=_mtime):
            if other == self.path:
                continue
            try:
                handle = open(other)
            except FileNotFoundError:
                continue  # emptied and closed by its live writer meanwhile
            with handle:
                try:
                    fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except OSError:
                    continue  # a live writer's spool
                done_file = self._done_path(other)
                done = int(done_file.read_text() or 0) if done_file.exists() else 0
                lines = [line for line in handle.read().splitlines() if line.strip()]
                for line in lines[done:]:
                    try:
                        entry = json.loads(line)
                    except json.JSONDecodeError:
                        break  # a line cut by a crash mid-append was never acknowledged
                    self.append(entry)  # durable here before the old file goes
                # Still holding the dead writer's lock: nobody else adopts it meanwhile.
                other.unlink(missing_ok=True)
                done_file.unlink(missing_ok=True)

    def __len__(self) -> int:
        return len(self.entries)

    def append(self, entry: dict[str, Any]) -> None:
        self._handle.write(json.dumps(entry, default=_plain) + "\n")
        self._handle.flush()
        os.fsync(self._handle.fileno())
        self.entries.append(entry)
        self._lines += 1

    def drop_first(self, count: int) -> None:
        """Forget the first ``count`` pending entries: they reached the store."""
        if not count:
            return
        del self.entries[:count]
        self._done += count
        if self._done < self._lines:
            self._write_done(self._done)
            return
        self._write_done(0)
        self._handle.truncate(0)
        os.fsync(self._handle.fileno())
        self._lines = self._done = 0

    def _write_done(self, count: int) -> None:
        done = self._done_path(self.path)
        tmp = done.with_name(done.name + ".tmp")
        tmp.write_text(str(count))
        with open(tmp) as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, done)

    def close(self) -> None:
        """Give the file up; an empty spool is removed, a non-empty one waits for adoption."""
        if self._handle.closed:
            return
        if not self.entries:  # unlinked while still locked: no adopter can see it half-gone
            self.path.unlink(missing_ok=True)
            self._done_path(self.path).unlink(missing_ok=True)
        self._handle.close()
