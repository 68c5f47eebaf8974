"""Metric intervals from raw features: half-subsamples without replacement and FID∞.

Pure functions on (n, D) feature arrays; the interval conventions and the reasons for
them are in ``evaluation.uncertainty``. Every draw comes from a seeded generator, so
the same features always give the same intervals.
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np

from evaluation import metrics as M
from evaluation.uncertainty import FID_INF_FIT, HALF_SUBSAMPLE, Interval, jackknife_interval

DEFAULT_REPEATS = 10
FID_INF_POINTS = 5  # sample counts in the 1/n fit, from n/5 to n


def half_subsample(
    fake: np.ndarray,
    real: np.ndarray,
    statistic: Callable[[np.ndarray, np.ndarray], Sequence[float]],
    *,
    repeats: int,
    seed: int,
) -> list[list[float]]:
    """``statistic`` on ``repeats`` pairs of half subsets (⌊n/2⌋ fake, ⌊n_ref/2⌋ real rows).

    Returns one list of statistic values per repeat (a statistic may return several
    numbers, e.g. precision and recall).
    """
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(repeats):
        x = fake[np.sort(rng.choice(len(fake), len(fake) // 2, replace=False))]
        y = real[np.sort(rng.choice(len(real), len(real) // 2, replace=False))]
        out.append(list(statistic(x, y)))
    return out


def half_subsample_intervals(
    values: Sequence[float],
    fake: np.ndarray,
    real: np.ndarray,
    statistic: Callable[[np.ndarray, np.ndarray], Sequence[float]],
    *,
    repeats: int = DEFAULT_REPEATS,
    seed: int = M.DEFAULT_SEED,
) -> list[Interval]:
    """Intervals around full-sample ``values`` of ``statistic`` (one per returned number).

    The delete-d jackknife factor uses the smaller of the two sets (the conservative side).

    Raises:
        ValueError: fewer than 2 repeats, or a set of fewer than 4 rows (halves must differ).
    """
    n = min(len(fake), len(real))
    if repeats < 2 or n < 4:
        raise ValueError(f"half-subsample intervals need >= 2 repeats and >= 4 samples per set, "
                         f"have {repeats} repeats, {len(fake)} fake, {len(real)} real")
    per_repeat = np.asarray(half_subsample(fake, real, statistic, repeats=repeats, seed=seed))  # (R, k)
    return [jackknife_interval(v, per_repeat[:, i], n=n, m=n // 2, method=HALF_SUBSAMPLE) for i, v in enumerate(values)]


def fid_infinity(fake: np.ndarray, real: np.ndarray, fid_at_n: float, *, points: int = FID_INF_POINTS,
                 seed: int = M.DEFAULT_SEED) -> tuple[float, Interval, list[int]]:
    """FID∞ (Chong & Forsyth, CVPR 2020, §3): FID of random fake subsets of ``points`` sizes
    from n/5 to n (without replacement) against all of ``real``, fitted linearly in 1/n;
    FID∞ is the intercept at 1/n = 0.

    Args:
        fid_at_n: FID of all ``fake`` rows (the last fit point, already computed).

    Returns:
        (FID∞, interval from the intercept's least-squares standard error, sizes used).

    Raises:
        ValueError: too few samples for ``points`` distinct sizes of at least 2.
    """
    n = len(fake)
    sizes = sorted({int(round(s)) for s in np.linspace(n / 5, n, points)})
    if len(sizes) < 3 or sizes[0] < 2:
        raise ValueError(f"FID-infinity needs at least 3 distinct sample counts >= 2 between n/5 and n, have n={n}")
    rng = np.random.default_rng(seed)
    fids = [M.frechet_distance_features(fake[np.sort(rng.choice(n, s, replace=False))], real) for s in sizes[:-1]]
    fids.append(fid_at_n)
    x, y = 1.0 / np.asarray(sizes, np.float64), np.asarray(fids)
    design = np.stack([np.ones_like(x), x], axis=1)
    coef, *_ = np.linalg.lstsq(design, y, rcond=None)
    residual = y - design @ coef
    sigma2 = float(residual @ residual) / (len(x) - 2)
    intercept_var = sigma2 * np.linalg.inv(design.T @ design)[0, 0]  # OLS standard error of the intercept
    value = float(coef[0])
    return value, Interval.around(value, float(np.sqrt(intercept_var)), FID_INF_FIT, len(sizes)), sizes
