"""The sweep's terminal output: a live table in place on a TTY, state-change lines off it."""

from __future__ import annotations

import io
import os
import pty
import re
from dataclasses import dataclass, field

from platform.orchestration.display import LiveTable, StateLines, cell, make_display


@dataclass
class _Plan:
    name: str
    stages: list[str]


@dataclass
class _Trial:
    plan: _Plan
    keys: dict[str, str] = field(default_factory=dict)


def _trials() -> list[_Trial]:
    # Two trials sharing one first stage, as kl_vs_vq with an lr axis does.
    return [_Trial(_Plan("f=4 kl lr=1e-4", ["first_stage", "ldm", "eval"]), {"first_stage": "A", "ldm": "B", "eval": "C"}),
            _Trial(_Plan("f=4 kl lr=2e-4", ["first_stage", "ldm", "eval"]), {"first_stage": "A", "ldm": "D", "eval": "E"})]


def _boards(t0: float) -> list[dict]:
    """A sweep as the progress board sees it, polled many times (steps change every poll)."""
    boards = []
    for step in range(0, 21, 2):
        boards.append({"first_stage:A": {"state": "running", "step": step, "total": 20, "since": t0}})
    done = {"state": "done", "since": t0, "updated": t0 + 30}
    for step in range(0, 31, 5):
        boards.append({"first_stage:A": done, "ldm:B": {"state": "running", "step": step, "total": 30, "since": t0},
                       "ldm:D": {"state": "running", "step": step, "total": 30, "since": t0}})
    boards.append({"first_stage:A": done, "ldm:B": done, "ldm:D": {"state": "failed", "message": "boom", "since": t0},
                   "eval:C": {"state": "cached", "since": t0}})
    return boards


def test_off_a_tty_one_line_per_stage_state_change():
    stream = io.StringIO()
    display = make_display(_trials(), stream)
    assert isinstance(display, StateLines)
    for board in _boards(1000.0):
        display.update(board)
    display.close()
    lines = stream.getvalue().splitlines()
    # first_stage: running, done; ldm B: running, done; ldm D: running, failed; eval C: cached.
    assert len(lines) == 7, lines
    assert re.search(r"first_stage f=4 kl lr=1e-4 \(\+1 trials\): running$", lines[0])
    assert lines[1].endswith("first_stage f=4 kl lr=1e-4 (+1 trials): done in 30s")
    assert any(line.endswith("ldm f=4 kl lr=2e-4: failed: boom") for line in lines)


def test_on_a_tty_the_table_redraws_in_place():
    master, slave = pty.openpty()
    stream = os.fdopen(slave, "w")
    display = make_display(_trials(), stream)
    assert isinstance(display, LiveTable)
    for board in _boards(1000.0):
        display.update(board)
    display.close()
    stream.close()
    chunks = []
    while True:
        try:
            data = os.read(master, 65536)
        except OSError:
            break
        if not data:
            break
        chunks.append(data)
    os.close(master)
    out = b"".join(chunks).decode(errors="replace")
    redraws = len(re.findall(r"\x1b\[\d*A", out))  # cursor up: the previous frame is overwritten
    assert redraws >= len(_boards(1000.0)) - 1, out[-500:]
    assert out.count("sweep running") >= len(_boards(1000.0))  # each frame redraws the title...
    assert "f=4 kl lr=2e-4" in out and "failed" in out  # ...and the final frame stays on screen


def test_cells_show_step_rate_and_eta():
    row = {"state": "running", "step": 10, "total": 40, "since": 100.0}
    assert cell(row, 120.0) == "10/40 0.5 it/s eta 1m00s"
    assert cell(None, 0.0) == "waiting"
    assert cell({"state": "done", "since": 0.0, "updated": 75.0}, 80.0) == "done 1m15s"
