"""The end-of-sweep summary table (the live view is platform.orchestration.display)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional, Sequence

from evaluation.comparison import format_value, logged_metric, reconstruction_notes, significance_notes
from platform.orchestration.display import duration
from platform.orchestration.plan import format_table


def _fmt(value: Any, digits: int = 3) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}g}" if abs(value) < 1000 else f"{value:.0f}"
    return str(value)


SUMMARY_COLUMNS = [
    ("PSNR", "rec/psnr"), ("SSIM", "rec/ssim"), ("rFID", "rec/rfid"), ("FID", "eval/fid"), ("FID∞", "eval/fid_inf"), ("KID", "eval/kid"),
    ("P", "eval/precision"), ("R", "eval/recall"), ("IS", "eval/is"), ("N", "eval/n"), ("N_ref", "eval/n_ref"),
    ("train img/s", "perf/train_img_per_s"), ("sample img/s", "perf/sample_img_per_s"),
]


def _metric_cell(summary: dict[str, Any], key: str) -> str:
    """``value ±half-width`` for metrics with an interval (``evaluation.uncertainty``)."""
    metric = logged_metric(summary, key)
    return format_value(metric) if metric is not None else _fmt(summary.get(key))


def format_summary(trials: Sequence[Any], work_dir: Path, *, first_complete: Optional[tuple[int, float]] = None,
                   all_complete_s: Optional[float] = None) -> str:
    """The end-of-sweep table, one row per trial (metrics ± their 95 % interval half-width),
    then when the first trial completed, which differences are significant, any failures
    and unavailable metrics.

    Args:
        first_complete: (trial index, seconds after the stages were submitted).
        all_complete_s: seconds until every trial had finished.
    """
    rows, notes = [], []
    reasons: dict[tuple[str, str], list[str]] = {}  # (metric, why) -> trials
    compared: list[tuple[str, dict[str, Any]]] = []
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
                cells.append(_metric_cell(summary, key))
        status = "ok" if not trial.error else f"FAILED ({trial.failed_stage})"
        rows.append([trial.plan.index, trial.plan.name, trial.cfg["first_stage"]["f"],
                     trial.cfg["first_stage"]["regularizer"], *cells, f"{hours:.3f}", status])
        compared.append((f"{trial.plan.index} ({trial.plan.name})", summary))
        if trial.error:
            log = Path(work_dir) / "stages" / trial.failed_stage / trial.keys[trial.failed_stage] / "stage.log"
            notes.append(f"trial {trial.plan.index} failed in {trial.failed_stage}: {trial.error}\n    log: {log}")
    significance = significance_notes(compared)
    significance += reconstruction_notes([(t.cfg["first_stage"]["f"], t.cfg["first_stage"]["regularizer"], summary)
                                          for t, (_, summary) in zip(trials, compared)])
    if significance:
        notes = ["± = half-width of the 95 % interval; significant = intervals do not overlap",
                 *significance, *notes]
    if first_complete is not None:
        total = f" (all trials: {duration(all_complete_s)})" if all_complete_s is not None else ""
        notes.insert(0, f"first complete trial: {first_complete[0]} after {duration(first_complete[1])}{total}")
    notes += [f"{key} unavailable (trials {', '.join(ids)}): {why}" for (key, why), ids in reasons.items()]
    header = ["trial", "name", "f", "reg", *(name for name, _ in SUMMARY_COLUMNS), "device-h", "status"]
    return "\nsummary\n" + format_table(header, rows) + ("\n" + "\n".join(notes) if notes else "")
