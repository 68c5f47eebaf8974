"""Which trials' metric differences are significant, for the sweep summary and the report.

Reads the MLflow scalars of ``evaluation.uncertainty`` (``eval/fid``, ``eval/fid_lo``,
...; ``rec/psnr``, ``rec/psnr_lo``, ... for first stages) of each trial and compares every
trial with the best one by interval overlap (:func:`evaluation.uncertainty.
significantly_different`); :func:`ordering_note` reads a metric along a swept axis (the
paper's reconstruction quality over f, Tab. 8).
"""

from __future__ import annotations

from typing import Mapping, Optional, Sequence

from evaluation.uncertainty import LoggedMetric, metric_from_mlflow, significantly_different

# Metric -> (display name, lower is better)
COMPARED: dict[str, tuple[str, bool]] = {
    "fid": ("FID", True), "fid_inf": ("FID∞", True), "kid": ("KID", True),
    "precision": ("precision", False), "recall": ("recall", False), "is": ("IS", False),
    "psnr": ("PSNR", False), "ssim": ("SSIM", False), "lpips": ("LPIPS", True), "rfid": ("rFID", True),
}
EVAL_COMPARED = ("fid", "fid_inf", "kid", "precision", "recall", "is")  # under eval/
REC_COMPARED = ("psnr", "ssim", "lpips", "rfid")  # first-stage reconstruction, under rec/


def logged_metric(scalars: Mapping[str, float], key: str) -> Optional[LoggedMetric]:
    """The metric ``key`` (``"eval/fid"``, ``"rec/psnr"``) with its interval, or None when
    it is not a compared metric or not logged."""
    prefix, _, name = key.rpartition("/")
    return metric_from_mlflow(scalars, name, prefix + "/") if name in COMPARED else None


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
                       names: Sequence[str] = EVAL_COMPARED) -> list[str]:
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


def ordering_note(points: Sequence[tuple[str, Mapping[str, float]]], key: str) -> Optional[str]:
    """One line reading ``key`` along an ordered axis, each neighbour pair marked ``>`` or
    ``<`` when their intervals do not overlap and ``≈`` when they do.

    Args:
        points: (label, scalars) in axis order, e.g. ``("f=4", summary)`` for f ascending.
        key: a compared metric with its prefix, e.g. ``"rec/psnr"``.

    Returns:
        e.g. ``"PSNR along f=2 (31.2 ±0.4) > f=4 (27.9 ±0.3) ≈ f=8 (27.6 ±0.3): 1 of 2
        steps not significant at this N (...)"``; None with fewer than two points that
        logged it, or when one has no interval.
    """
    logged = [(label, logged_metric(scalars, key)) for label, scalars in points]
    logged = [(label, m) for label, m in logged if m is not None]
    if len(logged) < 2:
        return None
    shown, _ = COMPARED[key.rpartition("/")[2]]
    if any(m.interval is None for _, m in logged):
        return None  # no interval (rFID here): nothing to say about significance
    text, undecided = f"{logged[0][0]} ({format_value(logged[0][1])})", 0
    for (_, a), (label, b) in zip(logged, logged[1:]):
        if not significantly_different(a, b):
            sign, undecided = "≈", undecided + 1
        else:
            sign = ">" if a.value > b.value else "<"
        text += f" {sign} {label} ({format_value(b)})"
    verdict = ("every step significant" if not undecided
               else f"{undecided} of {len(logged) - 1} steps not significant at this N")
    return f"{shown} along {text}: {verdict} (significant = 95 % intervals do not overlap)"


def reconstruction_notes(trials: Sequence[tuple[int, str, Mapping[str, float]]]) -> list[str]:
    """:func:`ordering_note` of each ``rec/`` metric along f (paper Tab. 8), per regulariser.

    Args:
        trials: (f, regulariser, scalars) per trial; f = 1 (no first stage) is skipped, and
            a regulariser whose trials share an f (another axis swept) gets no line.
    """
    by_reg: dict[str, list[tuple[int, Mapping[str, float]]]] = {}
    for f, regulariser, scalars in trials:
        if int(f) > 1:
            by_reg.setdefault(regulariser, []).append((int(f), scalars))
    lines = []
    for regulariser, points in sorted(by_reg.items()):
        if len({f for f, _ in points}) < len(points):
            continue
        points.sort(key=lambda point: point[0])
        for name in REC_COMPARED:
            line = ordering_note([(f"f={f}", scalars) for f, scalars in points], f"rec/{name}")
            lines += [f"{regulariser}: {line}"] if line else []
    return lines
