"""Decide, before anything runs, which stage results are reused and which run (again).

A finished result is reused only when its record reads, every checkpoint it vouches for
verifies against its recorded content id, it was computed from the upstream results that
exist now, and ``sweep.rerun`` does not name it. Anything else runs again: its old files
are moved aside (``records.discard_stage``) and the reason is printed and kept beside them.
A stage whose input runs again runs again too.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Sequence

from platform.config.schema import Stage
from platform.orchestration.records import (
    check_record,
    discard_stage,
    discarded_count,
    outputs_id,
    stage_dir,
    stage_lock,
)

STAGES = [s.value for s in Stage]


@dataclass
class Decision:
    """What happens to one stage key in this sweep."""

    stage: str
    run: bool  # False: reuse ``record``
    record: Optional[dict[str, Any]] = None
    reason: str = ""  # why it runs again ("" for a first run or a reuse)
    attempt: int = 0  # results of this key moved aside so far (names a fresh MLflow run)
    replaced_run: Optional[str] = None  # the MLflow run of the result moved aside


def rerun_requested(stage: str, key: str, rerun: Sequence[str]) -> bool:
    """``sweep.rerun`` names the stage, or a prefix of its key."""
    return any(item == stage or (item not in STAGES and key.startswith(item)) for item in rerun)


def decide(work_dir: Path, chains: Sequence[Sequence[tuple[str, str]]], rerun: Sequence[str]) -> dict[str, Decision]:
    """One ``Decision`` per key of ``chains`` (each trial's ``[(stage, key), ...]`` in order).

    Moves aside what must run again; prints one line per stage that runs again and why.
    """
    decisions: dict[str, Decision] = {}
    for chain in chains:
        upstream: Optional[Decision] = None
        for stage, key in chain:
            if key not in decisions:
                decisions[key] = _decide(stage, stage_dir(work_dir, stage, key), key, upstream, rerun)
            upstream = decisions[key]
    return decisions


def _decide(stage: str, directory: Path, key: str, upstream: Optional[Decision], rerun: Sequence[str]) -> Decision:
    record, problem = check_record(directory)
    reason = problem or ""
    if not reason and upstream is not None and (upstream.reason or (upstream.run and record is not None)):
        # Also for unfinished work when the input is replaced: it was trained on the old one.
        reason = f"its input ({upstream.stage}) runs again"
    if record is None and not reason:
        return Decision(stage, run=True, attempt=discarded_count(directory))  # first run, or resume
    if not reason and rerun_requested(stage, key, rerun):
        reason = "sweep.rerun asks for it"
    if not reason and upstream is not None and upstream.record is not None:
        consumed = record.get("upstream", {}).get(upstream.stage)
        if consumed is not None and consumed != outputs_id(upstream.record):
            reason = f"it was computed from other {upstream.stage} checkpoints than the ones recorded now"
    if not reason:  # the attempt that produced it: as many results had been moved aside before it
        return Decision(stage, run=False, record=record, attempt=discarded_count(directory))
    with stage_lock(directory):
        moved = discard_stage(directory, reason)
    if record is not None or problem or moved:
        where = f" (old files: {moved})" if moved else ""
        print(f"{stage} {key}: {reason}; running it again{where}", file=sys.stderr, flush=True)
    return Decision(stage, run=True, reason=reason, attempt=discarded_count(directory),
                    replaced_run=record.get("run_id") if record else None)
