"""Durable stage state on disk: the finished record, the MLflow run, the stage lock.

``<work_dir>/stages/<stage>/<key>/`` holds a stage's checkpoints and logs. A stage is
finished exactly when its ``record.json`` exists (written atomically at the end); the
MLflow run id is kept beside it from the first launch, so a relaunch reopens the same
run instead of creating a duplicate. An exclusive ``flock`` lets two sweeps that need
the same stage at the same moment train it once.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from pathlib import Path
from typing import Any, Iterator, Optional

RECORD = "record.json"


def stage_dir(work_dir: Path | str, stage: str, key: str) -> Path:
    return Path(work_dir) / "stages" / stage / key


def write_json_atomic(path: Path, payload: Any) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(payload, indent=2, sort_keys=True, default=str))
    with open(tmp, "rb") as handle:
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def read_record(directory: Path) -> Optional[dict[str, Any]]:
    """The finished record of a stage, or None while it has not finished."""
    path = Path(directory) / RECORD
    return json.loads(path.read_text()) if path.is_file() else None


def write_record(directory: Path, record: dict[str, Any]) -> None:
    write_json_atomic(Path(directory) / RECORD, record)


@contextlib.contextmanager
def stage_lock(directory: Path) -> Iterator[None]:
    """Hold the stage's exclusive lock (blocks while another process trains it)."""
    directory.mkdir(parents=True, exist_ok=True)
    with open(directory / ".lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
