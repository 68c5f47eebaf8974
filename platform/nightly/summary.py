"""The night's summary table: one row per checkpoint looked at, kept across invocations.

Rows are appended to ``<state_dir>/nights/<date>-<scope>.jsonl`` under the night's lock,
so a second invocation the same night, or two at once, add to one table (and one MLflow
run); the CSV and Markdown views are rebuilt from all of the night's rows.
"""

from __future__ import annotations

import contextlib
import csv
import fcntl
import io
import json
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

from platform.orchestration.plan import format_table

TABLE_METRICS = ("fid", "kid", "precision", "recall")
COLUMNS = ("experiment", "run", "step", "status", *TABLE_METRICS, *(f"d_{m}" for m in TABLE_METRICS),
           "regression", "note")


def row(experiment: str, run: str, outcome: Any, previous: Mapping[str, float] | None,
        regressions: Sequence[str]) -> dict[str, Any]:
    """A summary row; ``d_<m>`` is the change since ``previous`` (the run's last evaluation)."""
    values = {m: outcome.metrics.get(f"eval/{m}") for m in TABLE_METRICS}
    changes = {f"d_{m}": (values[m] - previous[f"eval/{m}"]
                          if values[m] is not None and previous and f"eval/{m}" in previous else None)
               for m in TABLE_METRICS}
    return {"experiment": experiment, "run": run, "step": outcome.step, "status": outcome.status, **values,
            **changes, "regression": "; ".join(regressions), "note": outcome.reason,
            "checkpoint": str(outcome.checkpoint)}


@contextlib.contextmanager
def night_file(path: Path, rows: Sequence[Mapping[str, Any]]) -> Iterator[list[dict[str, Any]]]:
    """Append ``rows`` to the night's file and yield all of the night's rows, holding the
    night's exclusive lock until the block ends (so two jobs record the night one at a time)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            for item in rows:
                handle.write(json.dumps(item, default=str) + "\n")
            handle.flush()
            handle.seek(0)
            yield [json.loads(line) for line in handle if line.strip()]
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def cell(column: str, value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:+.3g}" if column.startswith("d_") else f"{value:.4g}"
    return str(value)


def as_csv(rows: Sequence[Mapping[str, Any]]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=[*COLUMNS, "checkpoint"], extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def as_text(rows: Sequence[Mapping[str, Any]]) -> str:
    """Aligned plain-text table (also valid inside a Markdown code block)."""
    shown = [[cell(c, r.get(c)) for c in COLUMNS] for r in rows]
    return format_table(COLUMNS, shown)
