"""Text views of a sweep: the live progress table and the final summary."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any, Optional, Sequence

from platform.orchestration.plan import format_table
from platform.orchestration.progress import eta_seconds


def _duration(seconds: Optional[float]) -> str:
    if seconds is None:
        return ""
    minutes, secs = divmod(int(seconds), 60)
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


class ProgressPrinter:
    """Prints trials x stages (state, step/total, ETA) when something changed."""

    def __init__(self, trials: Sequence[Any], interval_s: float = 10.0) -> None:
        self.trials = trials
        self.interval_s = interval_s
        self._last = ""

    def _cell(self, row: Optional[dict[str, Any]], now: float) -> str:
        if row is None:
            return "waiting"
        state = row.get("state", "?")
        if state == "running" and row.get("total"):
            eta = eta_seconds(row, now)
            return f"{row.get('step', 0)}/{row['total']}" + (f" eta {_duration(eta)}" if eta else "")
        return state

    def render(self, board: dict[str, dict[str, Any]], now: Optional[float] = None) -> str:
        now = now or time.time()
        stages = ["first_stage", "ldm", "eval"]
        rows = []
        for trial in self.trials:
            cells = []
            for stage in stages:
                key = trial.keys.get(stage)
                if stage not in trial.plan.stages:
                    cells.append("-")
                else:
                    cells.append(self._cell(board.get(f"{stage}:{key}"), now))
            rows.append([trial.plan.index, trial.cfg["first_stage"]["f"], trial.cfg["first_stage"]["name"], *cells])
        return format_table(["trial", "f", "first stage", *stages], rows)

    def maybe_print(self, board: dict[str, dict[str, Any]]) -> None:
        text = self.render(board)
        if text != self._last:
            print(f"\n[{time.strftime('%H:%M:%S')}] progress\n{text}", file=sys.stderr, flush=True)
            self._last = text


def _fmt(value: Any, digits: int = 3) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}g}" if abs(value) < 1000 else f"{value:.0f}"
    return str(value)


SUMMARY_COLUMNS = [
    ("PSNR", "rec/psnr"), ("rFID", "rec/rfid"), ("FID", "eval/fid"), ("KID", "eval/kid"),
    ("P", "eval/precision"), ("R", "eval/recall"), ("IS", "eval/is"), ("N", "eval/n"),
    ("train img/s", "perf/train_img_per_s"), ("sample img/s", "perf/sample_img_per_s"),
]


def format_summary(trials: Sequence[Any], work_dir: Path) -> str:
    """The end-of-sweep table, one row per trial, then any failures and unavailable metrics."""
    rows, notes = [], []
    reasons: dict[tuple[str, str], list[str]] = {}  # (metric, why) -> trials
    for trial in trials:
        summary: dict[str, Any] = {}
        unavailable: dict[str, str] = {}
        hours = 0.0
        for record in trial.records.values():
            summary.update(record.get("summary", {}))
            unavailable.update(record.get("unavailable", {}))
            hours += record.get("device_hours", 0.0)
        cells = []
        for _, key in SUMMARY_COLUMNS:
            if key in unavailable and key not in summary:
                cells.append("unavailable")
                reasons.setdefault((key, unavailable[key]), []).append(str(trial.plan.index))
            else:
                cells.append(_fmt(summary.get(key)))
        status = "ok" if not trial.error else f"FAILED ({trial.failed_stage})"
        rows.append([trial.plan.index, trial.cfg["first_stage"]["f"], trial.cfg["first_stage"]["regularizer"],
                     *cells, f"{hours:.3f}", status])
        if trial.error:
            log = Path(work_dir) / "stages" / trial.failed_stage / trial.keys[trial.failed_stage] / "stage.log"
            notes.append(f"trial {trial.plan.index} failed in {trial.failed_stage}: {trial.error}\n    log: {log}")
    notes += [f"{key} unavailable (trials {', '.join(ids)}): {why}" for (key, why), ids in reasons.items()]
    header = ["trial", "f", "reg", *(name for name, _ in SUMMARY_COLUMNS), "device-h", "status"]
    return "\nsummary\n" + format_table(header, rows) + ("\n" + "\n".join(notes) if notes else "")
