"""``python -m platform.cache ls|verify|prune``: the stage store under ``paths.work_dir``.

    python -m platform.cache ls [--work-dir runs]          # key, state, size, age, commit, runs
    python -m platform.cache verify [--work-dir runs]      # re-hash every finished stage's checkpoints
    python -m platform.cache prune [--work-dir runs] [--keep-checkpoints N] [--unfinished] [--dry-run]

``prune`` deletes results moved aside after a failed verification or ``sweep.rerun``
(``stages/<stage>/.discarded``), with ``--keep-checkpoints N`` all but the newest N
checkpoints of each finished stage (the record is updated; its final checkpoint, which
later stages consumed, always stays), and with ``--unfinished`` unfinished stage
directories nobody is running. It never deletes a finished stage: records and MLflow runs
point at those.
"""

from __future__ import annotations

import argparse
import fcntl
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional, Sequence

from platform.orchestration.plan import format_table
from platform.orchestration.records import (
    DISCARDED,
    LOCK,
    RecordError,
    check_record,
    read_record,
    write_record,
)


@dataclass
class StageEntry:
    stage: str
    key: str
    directory: Path
    record: Optional[dict]
    problem: Optional[str] = None  # unreadable record


def _size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


def _human(size: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} TB"


def _age(seconds: float) -> str:
    for unit, span in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= span:
            return f"{seconds / span:.0f}{unit}"
    return f"{seconds:.0f}s"


def scan(work_dir: Path) -> list[StageEntry]:
    """Every stage directory under ``work_dir/stages`` (moved-aside results excluded)."""
    entries = []
    for directory in sorted((work_dir / "stages").glob("*/*")):
        if not directory.is_dir() or directory.name == DISCARDED:
            continue
        try:
            record, problem = read_record(directory), None
        except RecordError as error:
            record, problem = None, str(error)
        entries.append(StageEntry(directory.parent.name, directory.name, directory, record, problem))
    return entries


def _runs_using(work_dir: Path, tracking_uri: Optional[str]) -> Optional[dict[str, list[str]]]:
    """stage key -> names of the MLflow trial runs that tag it; None if the store is unreadable."""
    from platform.tracking import STALE_TAG, TrackingStore, resolve_tracking_uri

    try:
        store = TrackingStore(resolve_tracking_uri(tracking_uri, work_dir))
        runs = store.client.search_runs(
            [e.experiment_id for e in store.client.search_experiments()], "tags.kind = 'trial'", max_results=5000)
    except Exception:  # noqa: BLE001 - the listing still works without MLflow
        return None
    using: dict[str, list[str]] = {}
    for run in runs:
        for tag, value in run.data.tags.items():
            if tag.endswith("_key") and run.data.tags.get(STALE_TAG) != "true":
                using.setdefault(value, []).append(run.info.run_name)
    return using


def list_stages(work_dir: Path, tracking_uri: Optional[str]) -> str:
    using = _runs_using(work_dir, tracking_uri)
    rows, now = [], time.time()
    for entry in scan(work_dir):
        record = entry.record or {}
        state = "finished" if entry.record else ("unreadable" if entry.problem else "unfinished")
        age = now - record.get("finished_at", entry.directory.stat().st_mtime)
        commit = record.get("provenance", {}).get("commit", "-")[:12]
        runs = "?" if using is None else (", ".join(sorted(using.get(entry.key, []))) or "-")
        rows.append([entry.stage, entry.key, state, _human(_size(entry.directory)), _age(age), commit, runs])
    discarded = sum(_size(p) for p in (work_dir / "stages").glob(f"*/{DISCARDED}"))
    table = format_table(["stage", "key", "state", "size", "age", "commit", "trial runs"], rows)
    return f"{table}\nmoved aside (prune deletes): {_human(discarded)}"


def verify_stages(work_dir: Path) -> int:
    """Print each finished stage's verification; returns the number of problems."""
    problems = 0
    for entry in scan(work_dir):
        if entry.record is None and entry.problem is None:
            continue
        _, problem = check_record(entry.directory)
        problems += problem is not None
        print(f"{entry.stage} {entry.key}: {'ok' if problem is None else problem}")
    return problems


def _try_lock(directory: Path):
    handle = open(directory / LOCK, "w")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        return None
    return handle


def prune(work_dir: Path, *, keep_checkpoints: Optional[int], unfinished: bool, dry_run: bool) -> int:
    """Delete what the policy allows (see the module docstring); returns bytes freed."""
    freed = 0

    def remove(path: Path, why: str) -> None:
        nonlocal freed
        freed += _size(path)
        print(f"{'would delete' if dry_run else 'deleted'} {path} ({why})")
        if not dry_run:
            shutil.rmtree(path)

    for holder in sorted((work_dir / "stages").glob(f"*/{DISCARDED}")):
        for old in sorted(holder.iterdir()):
            remove(old, (old / "discarded.txt").read_text().strip() if (old / "discarded.txt").is_file() else "moved aside")
    for entry in scan(work_dir):
        lock = _try_lock(entry.directory)
        if lock is None:
            print(f"skipped {entry.directory}: in use")
            continue
        with lock:
            if entry.record is None and entry.problem is None and unfinished:
                remove(entry.directory, "unfinished")
            elif entry.record is not None and keep_checkpoints:
                _prune_checkpoints(entry, keep_checkpoints, remove, dry_run)
    return freed


def _prune_checkpoints(entry: StageEntry, keep: int, remove: Callable[[Path, str], None], dry_run: bool) -> None:
    """Delete all but the newest ``keep`` checkpoints a finished record vouches for."""
    raw = dict(entry.record)
    listed = sorted(raw.get("checkpoints", {}))
    drop = listed[:-keep] if keep < len(listed) else []
    for relative in drop:
        remove(entry.directory / relative, f"older than the newest {keep} checkpoints")
    if drop and not dry_run:
        raw["checkpoints"] = {rel: cid for rel, cid in raw["checkpoints"].items() if rel not in drop}
        raw["pruned_checkpoints"] = sorted(set(raw.get("pruned_checkpoints", [])) | set(drop))
        write_record(entry.directory, raw)


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m platform.cache", description=__doc__.split("\n\n")[0])
    parser.add_argument("command", choices=("ls", "verify", "prune"))
    parser.add_argument("--work-dir", type=Path, default=Path("runs"), help="paths.work_dir (default: runs)")
    parser.add_argument("--tracking-uri", default=None,
                        help="MLflow store (default: $MLFLOW_TRACKING_URI, else WORK_DIR/mlflow.db)")
    parser.add_argument("--keep-checkpoints", type=int, default=None, metavar="N",
                        help="prune: keep only the newest N checkpoints of each finished stage (N >= 1)")
    parser.add_argument("--unfinished", action="store_true", help="prune: also delete unfinished stage directories")
    parser.add_argument("--dry-run", action="store_true", help="prune: only print what would be deleted")
    args = parser.parse_args(argv)
    if not (args.work_dir / "stages").is_dir():
        print(f"error: {args.work_dir} has no stages/ (pass --work-dir, the sweep's paths.work_dir)", file=sys.stderr)
        return 2
    if args.keep_checkpoints is not None and args.keep_checkpoints < 1:
        parser.error("--keep-checkpoints must be at least 1 (the final checkpoint always stays)")
    if args.command == "ls":
        print(list_stages(args.work_dir, args.tracking_uri))
        return 0
    if args.command == "verify":
        problems = verify_stages(args.work_dir)
        print(f"{problems} problem(s)" if problems else "all finished stages verify")
        return 1 if problems else 0
    freed = prune(args.work_dir, keep_checkpoints=args.keep_checkpoints, unfinished=args.unfinished,
                  dry_run=args.dry_run)
    print(f"{'would free' if args.dry_run else 'freed'} {_human(freed)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
