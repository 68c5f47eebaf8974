"""Uncertainty of evaluation metrics: intervals, significance, and their MLflow names.

Every metric result carries its value, N, N_ref and an :class:`Interval`. How intervals
are made (DESIGN.md §6):

- FID, precision, recall: half-subsampling without replacement. R subsets of n/2
  generated and N_ref/2 reference features; the spread of the metric over them is the
  delete-d jackknife with d = n/2, whose variance factor (n - d)/d is 1 (Shao & Wu 1989,
  Ann. Stat. 17(3)), so their std estimates the std of the full-N value. Bootstrapping
  *with* replacement is avoided: duplicated rows lower the effective N and inflate
  Fréchet distances.
- KID: mean ± std over random subsets of size m <= N/2 (so the subsets differ); the same
  jackknife scales the spread at m to the N-sample mean by sqrt(m / (N - m)).
- IS: mean ± std over disjoint splits (torch-fidelity); the interval is for the mean.
- FID∞ (Chong & Forsyth, CVPR 2020): FID at several sample counts, fitted linearly in
  1/n and read at 1/n = 0; interval from the intercept's least-squares standard error.
- Reconstruction PSNR, SSIM, LPIPS (``rec/`` prefix): means of per-image values, so the
  interval of a mean, ± Z·s/√N.

Intervals are ``value ± Z·std`` (about 95 %). Two results differ significantly when
their intervals do not overlap (conservative: non-overlap of two 95 % intervals).

MLflow names (shared contract 4; nightly regression detection and the dashboard read
them): for m in :data:`UNCERTAIN_METRICS`, ``<prefix>m`` (value), ``<prefix>m_std``,
``<prefix>m_lo``, ``<prefix>m_hi``; plus ``<prefix>n``, ``<prefix>n_ref``,
``<prefix>fid_inf`` (with the same suffixes), ``<prefix>kid_subset_size`` and
``<prefix>repeats``. ``prefix`` is ``eval/`` or ``eval/<setting>/``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping, Optional, Sequence

import numpy as np

Z = 1.96  # two-sided 95 % normal quantile
UNCERTAIN_METRICS: tuple[str, ...] = ("fid", "kid", "precision", "recall", "is", "fid_inf")

# Method names recorded with every interval (Interval.method).
HALF_SUBSAMPLE = "half-subsample"  # delete-d jackknife, d = N/2, without replacement
KID_SUBSETS = "kid-subsets"
IS_SPLITS = "is-splits"
FID_INF_FIT = "fid-inf-fit"  # least-squares intercept in 1/n
PER_IMAGE_MEAN = "per-image-mean"  # standard error of a mean of per-image values
METHODS = {"fid": HALF_SUBSAMPLE, "precision": HALF_SUBSAMPLE, "recall": HALF_SUBSAMPLE,
           "kid": KID_SUBSETS, "is": IS_SPLITS, "fid_inf": FID_INF_FIT,
           "psnr": PER_IMAGE_MEAN, "ssim": PER_IMAGE_MEAN, "lpips": PER_IMAGE_MEAN}
# Metrics whose value does not depend on N (so results at different N may be compared).
N_INDEPENDENT = frozenset({"fid_inf"})


@dataclass(frozen=True)
class Interval:
    """An approximate 95 % interval around a metric value.

    Attributes:
        low, high: interval bounds (value ∓ Z·std for the methods here).
        std: estimated standard deviation of the reported value.
        method: how it was estimated (:data:`METHODS`), e.g. ``"half-subsample"``.
        repeats: subsets, splits or fit points it was estimated from.
    """

    low: float
    high: float
    std: float
    method: str
    repeats: int

    @classmethod
    def around(cls, value: float, std: float, method: str, repeats: int) -> "Interval":
        """``value ± Z·std``."""
        return cls(value - Z * std, value + Z * std, std, method, repeats)


def jackknife_interval(value: float, subset_values: Sequence[float], *, n: int, m: int, method: str) -> Interval:
    """Interval of ``value`` (computed on ``n`` samples) from its values on subsets of size ``m``.

    Delete-d jackknife with d = n - m (Shao & Wu 1989): Var = m / (n - m) · Var_subsets,
    exact for the mean of subsets drawn without replacement; m = n/2 makes the factor 1.

    Raises:
        ValueError: fewer than 2 subset values, or m not in [1, n).
    """
    if len(subset_values) < 2:
        raise ValueError(f"an interval needs at least 2 subset values, have {len(subset_values)}")
    if not 0 < m < n:
        raise ValueError(f"subset size {m} must be between 1 and n - 1 = {n - 1} so subsets differ")
    std = float(np.std(np.asarray(subset_values, np.float64), ddof=1) * math.sqrt(m / (n - m)))
    return Interval.around(float(value), std, method, len(subset_values))


def _interval_of(result: Any) -> Optional[Interval]:
    return result if isinstance(result, Interval) else getattr(result, "interval", None)


def significantly_different(a: Any, b: Any) -> bool:
    """Whether two metric results differ beyond their uncertainty (intervals do not overlap).

    Args:
        a, b: metric results (anything with ``.interval``, e.g. ``evaluation.report.
            MetricResult``) or :class:`Interval` objects.

    Returns:
        False when either has no interval (or no value).

    Raises:
        ValueError: both are results of an N-dependent metric (FID, KID, P/R, IS) computed
            at different N or N_ref: such values are not comparable (FID's small-sample
            bias alone differs); compare at the same N, or compare ``fid_inf``.
    """
    ia, ib = _interval_of(a), _interval_of(b)
    if ia is None or ib is None:
        return False
    if getattr(a, "value", 0.0) is None or getattr(b, "value", 0.0) is None:
        return False
    name = getattr(a, "name", None) or getattr(b, "name", None)
    if name not in N_INDEPENDENT:
        for field in ("n", "n_ref"):
            va, vb = getattr(a, field, None), getattr(b, field, None)
            if va is not None and vb is not None and va != vb:
                raise ValueError(f"cannot compare {name or 'metric'} values at different {field} ({va} vs {vb}): "
                                 f"evaluate both at the same {field}, or compare fid_inf")
    return ia.high < ib.low or ib.high < ia.low


def mlflow_metrics(results: Mapping[str, Any], prefix: str = "eval/") -> dict[str, float]:
    """MLflow scalars of metric results (contract 4 names; unavailable metrics are left out).

    Args:
        results: metric name -> result with ``value``, ``n``, ``n_ref``, ``interval``
            and ``details`` (``evaluation.report.MetricResult``).
        prefix: ``"eval/"`` or ``"eval/<setting>/"``.
    """
    out: dict[str, float] = {}
    for name, r in results.items():
        if r.value is None or not math.isfinite(r.value):
            continue
        out[f"{prefix}{name}"] = float(r.value)
        if r.interval is not None:
            out[f"{prefix}{name}_std"] = r.interval.std
            out[f"{prefix}{name}_lo"] = r.interval.low
            out[f"{prefix}{name}_hi"] = r.interval.high
            if r.interval.method == HALF_SUBSAMPLE:
                out[f"{prefix}repeats"] = float(r.interval.repeats)
        out[f"{prefix}n"] = float(r.n)
        if r.n_ref is not None:
            out[f"{prefix}n_ref"] = float(r.n_ref)
        if name == "kid" and "subset_size" in r.details:
            out[f"{prefix}kid_subset_size"] = float(r.details["subset_size"])
    return out


@dataclass(frozen=True)
class LoggedMetric:
    """A metric read back from MLflow scalars (what :func:`significantly_different` needs)."""

    name: str
    value: float
    n: Optional[int]
    n_ref: Optional[int]
    interval: Optional[Interval]


def metric_from_mlflow(metrics: Mapping[str, float], name: str, prefix: str = "eval/") -> Optional[LoggedMetric]:
    """Rebuild one metric from a run's scalars (``run.data.metrics``); None if not logged.

    The interval is present when ``_lo``/``_hi``/``_std`` were logged; its method is the
    one this module uses for ``name`` and its repeats ``<prefix>repeats`` (half-subsample
    metrics) or 0 where not logged.
    """
    value = metrics.get(f"{prefix}{name}")
    if value is None:
        return None
    interval = None
    parts = [metrics.get(f"{prefix}{name}_{s}") for s in ("lo", "hi", "std")]
    if all(p is not None for p in parts):
        method = METHODS.get(name, "unknown")
        repeats = {HALF_SUBSAMPLE: metrics.get(f"{prefix}repeats", 0),
                   PER_IMAGE_MEAN: metrics.get(f"{prefix}n", 0)}.get(method, 0)
        interval = Interval(parts[0], parts[1], parts[2], method, int(repeats))
    n, n_ref = metrics.get(f"{prefix}n"), metrics.get(f"{prefix}n_ref")
    return LoggedMetric(name, float(value), None if n is None else int(n),
                        None if n_ref is None or name == "is" else int(n_ref), interval)
