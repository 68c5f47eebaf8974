"""Durable stage state on disk: the finished record, its verification, the stage lock.

``<work_dir>/stages/<stage>/<key>/`` holds a stage's checkpoints and logs. A stage is
finished exactly when its ``record.json`` exists (written atomically at the end). Paths in
a record are stored relative to the stage directory, so ``runs/`` can be moved or mounted
elsewhere; ``read_record`` hands them back absolute. A record lists the content id of each
checkpoint it vouches for, and ``check_record`` re-verifies them before a cached result is
used. A result that fails (or that the user asks to recompute) is moved aside, never
deleted, by ``discard_stage``. An exclusive ``flock`` lets two sweeps that need the same
stage at the same moment train it once.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import time
from pathlib import Path
from typing import Any, Iterator, Mapping, Optional

from platform.checkpoint import CheckpointError, list_checkpoints, verify_checkpoint
from platform.hashing import sha256_json
from platform.orchestration.provenance import provenance

RECORD = "record.json"
LOCK = ".lock"
DISCARDED = ".discarded"  # stages/<stage>/.discarded/<key>-<time>/: results moved aside
REQUIRED = ("stage", "key", "run_id")


class RecordError(ValueError):
    """A ``record.json`` that cannot be read or lacks what every record has."""


def stage_dir(work_dir: Path | str, stage: str, key: str) -> Path:
    return Path(work_dir) / "stages" / stage / key


def write_json_atomic(path: Path, payload: Any) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(payload, indent=2, sort_keys=True, default=str))
    with open(tmp, "rb") as handle:
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def _relative(value: str, directory: Path) -> str:
    path = Path(value)
    return os.path.relpath(path, directory) if path.is_absolute() else value


def read_record(directory: Path | str) -> Optional[dict[str, Any]]:
    """The finished record of a stage (paths absolute, plus ``directory``), or None.

    Raises:
        RecordError: the file exists but is not a readable record.
    """
    directory = Path(directory)
    path = directory / RECORD
    if not path.is_file():
        return None
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise RecordError(f"{path} is unreadable ({error})") from None
    missing = [name for name in REQUIRED if not isinstance(record, dict) or name not in record]
    if missing:
        raise RecordError(f"{path} lacks {', '.join(missing)}")
    record["directory"] = str(directory.resolve())
    if record.get("checkpoint"):
        record["checkpoint"] = str((directory / record["checkpoint"]).resolve())
    return record


def write_record(directory: Path | str, record: Mapping[str, Any]) -> None:
    """Write ``record`` atomically with its paths made relative to ``directory``."""
    directory = Path(directory).resolve()
    stored = {k: v for k, v in record.items() if k != "directory"}
    if stored.get("checkpoint"):
        stored["checkpoint"] = _relative(str(stored["checkpoint"]), directory)
    stored["checkpoints"] = {_relative(p, directory): cid for p, cid in stored.get("checkpoints", {}).items()}
    write_json_atomic(directory / RECORD, stored)


def checkpoint_ids(directory: Path | str, paths: list[Path]) -> dict[str, str]:
    """``relative path -> content id`` of ``paths`` (checkpoints inside ``directory``)."""
    return {os.path.relpath(path, directory): verify_checkpoint(path) for path in paths}


def outputs_id(record: Mapping[str, Any]) -> str:
    """Identifies what downstream stages consumed: the content id of the newest checkpoint a
    record vouches for (a retrained stage never reproduces it; pruning older ones keeps it)."""
    checkpoints = record.get("checkpoints", {})
    return checkpoints[max(checkpoints)] if checkpoints else sha256_json(None)


def build_record(directory: Path | str, *, stage: str, key: str, run_id: str, result: Mapping[str, Any],
                 started: float, devices: float, upstream: list[Mapping[str, Any]], commit: Optional[str],
                 payload: Optional[Mapping[str, Any]], fingerprint: Optional[Mapping[str, Any]]) -> dict[str, Any]:
    """The record of a stage that just finished: ``result`` (the stage function's fields)
    plus the content ids of its checkpoints, what it consumed, and its provenance."""
    finished = time.time()
    checkpoints: dict[str, str] = {}
    if result.get("checkpoint"):  # every complete checkpoint beside the final one (evaluation reads them all)
        checkpoints = checkpoint_ids(directory, list_checkpoints(Path(result["checkpoint"]).parent))
    return {
        "stage": stage, "key": key, "run_id": run_id,
        "wall_s": finished - started, "device_hours": (finished - started) * devices / 3600.0,
        "started_at": started, "finished_at": finished,
        **result,
        "checkpoints": checkpoints,
        "upstream": {rec["stage"]: outputs_id(rec) for rec in upstream},
        "provenance": {**provenance(commit=commit), "payload": payload, "fingerprint": fingerprint},
    }


def check_record(directory: Path | str) -> tuple[Optional[dict[str, Any]], Optional[str]]:
    """``(record, problem)``: ``(None, None)`` when unfinished; ``problem`` names what is wrong
    with a finished record (unreadable, a checkpoint missing or not matching its id)."""
    directory = Path(directory)
    try:
        record = read_record(directory)
    except RecordError as error:
        return None, str(error)
    if record is None:
        return None, None
    for relative, content_id in record.get("checkpoints", {}).items():
        try:
            found = verify_checkpoint(directory / relative)
        except CheckpointError as error:
            return record, str(error)
        if found != content_id:
            return record, f"checkpoint {directory / relative} is not the one the record names (content id changed)"
    return record, None


def discarded_count(directory: Path | str) -> int:
    """How many earlier results of this stage key were moved aside (the run attempt number)."""
    directory = Path(directory)
    holder = directory.parent / DISCARDED
    return len(list(holder.glob(f"{directory.name}-*"))) if holder.is_dir() else 0


def discard_stage(directory: Path | str, reason: str) -> Optional[Path]:
    """Move everything of a stage directory (but its lock) aside, with ``reason``; returns
    where it went, or None when there was nothing to move. Call under ``stage_lock``."""
    directory = Path(directory)
    contents = [p for p in directory.iterdir() if p.name != LOCK] if directory.is_dir() else []
    if not contents:
        return None
    target = directory.parent / DISCARDED / f"{directory.name}-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}"
    target.mkdir(parents=True)
    for path in contents:
        shutil.move(str(path), target / path.name)
    (target / "discarded.txt").write_text(reason + "\n")
    return target


@contextlib.contextmanager
def stage_lock(directory: Path) -> Iterator[None]:
    """Hold the stage's exclusive lock (blocks while another process trains it)."""
    directory.mkdir(parents=True, exist_ok=True)
    with open(directory / LOCK, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
