"""Which trials' metric differences are significant, for the sweep summary and the report.

Reads the MLflow scalars of ``evaluation.uncertainty`` (``eval/fid``, ``eval/fid_lo``,
...) of each trial and compares every trial with the best one by interval overlap
(:func:`evaluation.uncertainty.significantly_different`).
"""

from __future__ import annotations

from typing import Mapping, Optional, Sequence

from evaluation.uncertainty import LoggedMetric, metric_from_mlflow, significantly_different

# Metric -> (display name, lower is better)
COMPARED: dict[str, tuple[str, bool]] = {
    "fid": ("FID", True), "fid_inf": ("FID∞", True), "kid": ("KID", True),
    "precision": ("precision", False), "recall": ("recall", False), "is": ("IS", False),
}


def format_value(metric: Optional[LoggedMetric], digits: int = 3) -> str:
    """``"234 ±12"`` (value ± half-width of the interval), the value alone, or ``"-"``."""
    if metric is None:
        return "-"

    def fmt(x: float) -> str:
        return f"{x:.{digits}g}" if abs(x) < 1000 else f"{x:.0f}"

    if metric.interval is None:
        return fmt(metric.value)
    return f"{fmt(metric.value)} ±{fmt((metric.interval.high - metric.interval.low) / 2)}"


def significance_notes(trials: Sequence[tuple[str, Mapping[str, float]]], *, prefix: str = "eval/",
                       names: Sequence[str] = tuple(COMPARED)) -> list[str]:
    """One line per metric: the best trial, and which others differ from it significantly.

    Args:
        trials: (label, scalars) per trial, e.g. ``("3 (f=8)", run.data.metrics)``.
    """
    lines = []
    for name in names:
        shown, lower_better = COMPARED[name]
        logged = [(label, metric_from_mlflow(scalars, name, prefix)) for label, scalars in trials]
        logged = [(label, m) for label, m in logged if m is not None]
        if len(logged) < 2:
            continue
        best_label, best = (min if lower_better else max)(logged, key=lambda item: item[1].value)
        worse, same, incomparable = [], [], []
        for label, m in logged:
            if label == best_label:
                continue
            if m.interval is None or best.interval is None:
                incomparable.append(label)
                continue
            try:
                (worse if significantly_different(best, m) else same).append(label)
            except ValueError:  # different N / N_ref: not comparable
                incomparable.append(label)
        parts = [f"{shown}: best {best_label} ({format_value(best)})"]
        parts.append(f"significantly worse: {', '.join(worse) or 'none'}")
        parts.append(f"not significantly different: {', '.join(same) or 'none'}")
        if incomparable:
            parts.append(f"not comparable (no interval or different N): {', '.join(incomparable)}")
        lines.append("; ".join(parts))
    return lines
