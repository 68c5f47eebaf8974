"""What a running sweep shows in the terminal.

On a terminal: one live table (trial x stage: step/total, rate, ETA) redrawn in place
with ``rich``. Anywhere else (CI, ``nohup``, cron, a pipe): one line per stage state
change, so a log of an hour-long sweep stays a few dozen lines. Stage output never
reaches this screen; it goes to each stage's ``stage.log``.
"""

from __future__ import annotations

import sys
import time
from typing import Any, Optional, Protocol, Sequence, TextIO

from platform.orchestration.progress import eta_seconds

STAGES = ("first_stage", "ldm", "eval")
REFRESH_S = 1.0  # how often the driver polls the progress board


def duration(seconds: Optional[float]) -> str:
    """``75.2`` -> ``1m15s``; ``None`` -> ``""``."""
    if seconds is None:
        return ""
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    if hours:
        return f"{hours}h{minutes:02d}m"
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


def cell(row: Optional[dict[str, Any]], now: float) -> str:
    """One stage's state: ``waiting``, ``12/30 2.1 it/s eta 8s``, ``done 41s``, ``failed``..."""
    if row is None:
        return "waiting"
    state = row.get("state", "?")
    if state == "running":
        step, total = row.get("step") or 0, row.get("total")
        if not total:
            return "running"
        elapsed = now - row["since"]
        rate = f" {step / elapsed:.2g} it/s" if step and elapsed > 0 else ""
        eta = eta_seconds(row, now)
        return f"{step}/{total}{rate}" + (f" eta {duration(eta)}" if eta else "")
    if state == "done":
        return f"done {duration(row.get('updated', now) - row['since'])}"
    return state


class Display(Protocol):
    def update(self, board: dict[str, dict[str, Any]]) -> None: ...

    def close(self) -> None: ...


class StateLines:
    """Off a terminal: one line per stage state change (running, done, cached, failed)."""

    def __init__(self, trials: Sequence[Any], stream: TextIO) -> None:
        self.stream = stream
        self._users: dict[str, list[str]] = {}  # board key -> names of the trials that need it
        for trial in trials:
            for stage in trial.plan.stages:
                self._users.setdefault(f"{stage}:{trial.keys[stage]}", []).append(trial.plan.name)
        self._seen: dict[str, str] = {}

    def update(self, board: dict[str, dict[str, Any]]) -> None:
        for key, row in board.items():
            state = row.get("state")
            if key not in self._users or state == self._seen.get(key):
                continue
            self._seen[key] = state
            stage, names = key.split(":", 1)[0], self._users[key]
            who = names[0] + (f" (+{len(names) - 1} trials)" if len(names) > 1 else "")
            detail = ""
            if state == "done":
                detail = f" in {duration(row.get('updated', time.time()) - row['since'])}"
            elif state == "failed" and row.get("message"):
                detail = f": {row['message']}"
            print(f"[{time.strftime('%H:%M:%S')}] {stage} {who}: {state}{detail}", file=self.stream, flush=True)

    def close(self) -> None:
        pass


class LiveTable:
    """On a terminal: the trial x stage table, redrawn in place by ``rich.live.Live``."""

    def __init__(self, trials: Sequence[Any], stream: TextIO) -> None:
        from rich.console import Console
        from rich.live import Live

        self.trials = trials
        self.started = time.time()
        self._board: dict[str, dict[str, Any]] = {}
        # Redrawn on every update, not on rich's timer, so the table never shows a torn board.
        self._live = Live(self._table(), console=Console(file=stream), auto_refresh=False, transient=False)
        self._live.start()

    def _table(self) -> Any:
        from rich.table import Table

        now = time.time()
        table = Table(title=f"sweep running {duration(now - self.started)}", title_justify="left",
                      box=None, header_style="bold")
        for column in ("trial", *STAGES):
            table.add_column(column)
        for trial in self.trials:
            cells = [cell(self._board.get(f"{s}:{trial.keys.get(s)}"), now) if s in trial.plan.stages else "-"
                     for s in STAGES]
            table.add_row(trial.plan.name, *cells)
        return table

    def update(self, board: dict[str, dict[str, Any]]) -> None:
        self._board = board
        self._live.update(self._table(), refresh=True)

    def close(self) -> None:
        self._live.stop()


def make_display(trials: Sequence[Any], stream: TextIO = sys.stderr) -> Display:
    """``LiveTable`` when ``stream`` is a terminal, else ``StateLines``."""
    return LiveTable(trials, stream) if stream.isatty() else StateLines(trials, stream)
