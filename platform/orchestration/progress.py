"""Live progress of a sweep: stages report into one Ray actor, the driver renders it."""

from __future__ import annotations

import time
from typing import Any

import ray


class ProgressBoard:
    """Latest state per stage, keyed by ``"<trial>/<stage>"`` (held in a Ray actor)."""

    def __init__(self) -> None:
        self._rows: dict[str, dict[str, Any]] = {}

    def update(self, key: str, **fields: Any) -> None:
        """Merge ``fields`` (state, step, total, message...) into the row for ``key``."""
        row = self._rows.setdefault(key, {"since": time.time()})
        if fields.get("state") == "running" and row.get("state") != "running":
            row["since"] = time.time()
        row.update(fields, updated=time.time())

    def snapshot(self) -> dict[str, dict[str, Any]]:
        return {key: dict(row) for key, row in self._rows.items()}


RemoteProgressBoard = ray.remote(num_cpus=0)(ProgressBoard)


def eta_seconds(row: dict[str, Any], now: float) -> float | None:
    """Linear ETA from the steps done since the stage started running."""
    step, total = row.get("step") or 0, row.get("total") or 0
    if row.get("state") != "running" or step <= 0 or total <= step:
        return None
    return (now - row["since"]) / step * (total - step)
