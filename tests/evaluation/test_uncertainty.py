"""Intervals, significance and the MLflow names of metric uncertainty (shared contract 4)."""

from __future__ import annotations

import numpy as np
import pytest

from evaluation.report import MetricResult
from evaluation.uncertainty import (
    HALF_SUBSAMPLE,
    Interval,
    jackknife_interval,
    metric_from_mlflow,
    mlflow_metrics,
    significantly_different,
)


def _result(name: str, value: float, std: float, n: int = 100, n_ref: int = 100) -> MetricResult:
    return MetricResult(value, n, n_ref, interval=Interval.around(value, std, HALF_SUBSAMPLE, 10), name=name)


def test_half_subsample_std_estimates_the_std_of_the_full_sample_mean():
    # For a mean, the delete-d jackknife at d = n/2 is exact in expectation: the spread
    # of half-sample means around the full mean is sigma / sqrt(n).
    rng = np.random.default_rng(0)
    n, sigma = 400, 3.0
    x = rng.normal(0.0, sigma, n)
    halves = [x[rng.choice(n, n // 2, replace=False)].mean() for _ in range(2000)]
    interval = jackknife_interval(x.mean(), halves, n=n, m=n // 2, method=HALF_SUBSAMPLE)
    assert interval.std == pytest.approx(x.std(ddof=1) / np.sqrt(n), rel=0.08)
    assert interval.low < x.mean() < interval.high and interval.repeats == 2000
    # A smaller subset is rescaled by sqrt(m / (n - m)) to the same answer.
    quarters = [x[rng.choice(n, n // 4, replace=False)].mean() for _ in range(2000)]
    rescaled = jackknife_interval(x.mean(), quarters, n=n, m=n // 4, method=HALF_SUBSAMPLE)
    assert rescaled.std == pytest.approx(interval.std, rel=0.1)
    with pytest.raises(ValueError, match="subsets differ"):
        jackknife_interval(1.0, [1.0, 2.0], n=10, m=10, method=HALF_SUBSAMPLE)


def test_significance_is_non_overlap_and_needs_intervals_at_the_same_n():
    a, b = _result("fid", 100.0, 2.0), _result("fid", 120.0, 2.0)
    assert significantly_different(a, b) and significantly_different(b, a)
    assert not significantly_different(a, _result("fid", 105.0, 2.0))  # 96..104 vs 101..109
    assert not significantly_different(a, MetricResult(300.0, 100, 100))  # no interval
    assert not significantly_different(a, MetricResult(None, 100, 100, unavailable="too few"))
    assert significantly_different(a.interval, b.interval)
    with pytest.raises(ValueError, match="different n "):
        significantly_different(a, _result("fid", 50.0, 1.0, n=200))
    with pytest.raises(ValueError, match="different n_ref"):
        significantly_different(a, _result("fid", 50.0, 1.0, n_ref=500))
    # FID-infinity removes the 1/N bias: comparable across N.
    assert significantly_different(_result("fid_inf", 10.0, 1.0, n=100), _result("fid_inf", 20.0, 1.0, n=1000))


def test_mlflow_names_round_trip():
    kid = MetricResult(0.01, 64, 80, std=0.002, details={"subset_size": 32},
                       interval=Interval.around(0.01, 0.001, "kid-subsets", 100), name="kid")
    results = {"fid": _result("fid", 100.0, 2.0, 64, 80), "kid": kid,
               "is": MetricResult(None, 64, unavailable="no fc layer", name="is")}
    scalars = mlflow_metrics(results, prefix="eval/ddim50/")
    assert scalars["eval/ddim50/fid_lo"] == pytest.approx(100.0 - 1.96 * 2.0)
    assert scalars["eval/ddim50/fid_std"] == 2.0 and scalars["eval/ddim50/repeats"] == 10
    assert (scalars["eval/ddim50/n"], scalars["eval/ddim50/n_ref"]) == (64, 80)
    assert scalars["eval/ddim50/kid_subset_size"] == 32
    assert not any(k.startswith("eval/ddim50/is") for k in scalars)
    back = metric_from_mlflow(scalars, "fid", prefix="eval/ddim50/")
    assert back.interval == results["fid"].interval and (back.n, back.n_ref) == (64, 80)
    assert metric_from_mlflow(scalars, "kid", prefix="eval/ddim50/").interval.method == "kid-subsets"
    assert metric_from_mlflow(scalars, "is", prefix="eval/ddim50/") is None
    assert significantly_different(back, metric_from_mlflow({**scalars, "eval/ddim50/fid": 200.0,
                                                             "eval/ddim50/fid_lo": 195.0, "eval/ddim50/fid_hi": 205.0},
                                                            "fid", prefix="eval/ddim50/"))


def test_sample_space_fid_equals_the_covariance_form():
    from evaluation import metrics as M

    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(30, 64)), rng.normal(0.3, 1.5, size=(45, 64))
    direct = M.frechet_distance(x.mean(0), np.cov(x, rowvar=False), y.mean(0), np.cov(y, rowvar=False))
    # Rank-deficient Σ1Σ2 (n < D): the D x D form takes square roots of ~1e-15 rounding
    # eigenvalues (~3e-8 each), so the two forms agree to ~1e-7 relative, not 1e-9.
    assert M.frechet_distance_features(x, y) == pytest.approx(direct, rel=1e-6)
    assert M.frechet_distance_features(y, x) == pytest.approx(direct, rel=1e-6)
    big = rng.normal(size=(80, 16))
    assert M.frechet_distance_features(big, big[::-1]) == pytest.approx(0.0, abs=1e-9)


def test_fid_infinity_removes_most_of_the_small_sample_bias():
    # Same Gaussian: the true FID is 0 and FID at n is pure ~1/n bias. Shifted by 0.1 in
    # 16 dimensions: the true FID is 0.16. FID-inf lands much closer to the truth.
    from evaluation import metrics as M
    from evaluation.resampling import fid_infinity

    rng = np.random.default_rng(0)
    d = 16
    x, y = rng.normal(size=(2000, d)), rng.normal(size=(20000, d))
    for shift, truth in ((0.0, 0.0), (0.1, 0.16)):
        fid_n = M.frechet_distance_features(x + shift, y)
        value, interval, sizes = fid_infinity(x + shift, y, fid_n)
        assert abs(value - truth) < (fid_n - truth) / 1.5, (shift, fid_n, value)
    assert sizes == [400, 800, 1200, 1600, 2000]
    assert interval.method == "fid-inf-fit" and interval.repeats == 5 and interval.low < value < interval.high


def test_compute_metrics_attaches_intervals_caps_kid_subsets_and_adds_fid_inf():
    import torch

    from evaluation.stats import FeatureStats
    from evaluation.workers import compute_metrics

    g = torch.Generator().manual_seed(0)
    d, n = 32, 60

    def stats(shift: float) -> FeatureStats:
        s = FeatureStats(d, keep_features=True)
        s.update(torch.randn(n, d, generator=g) + shift, range(n))
        return s

    real = stats(0.0)
    near, far = compute_metrics(stats(0.0), real, ("fid", "kid", "pr"), has_classifier=False), \
        compute_metrics(stats(1.0), real, ("fid", "kid", "pr"), has_classifier=False)
    for out in (near, far):
        for name in ("fid", "fid_inf", "kid", "precision", "recall"):
            r = out[name]
            assert r.interval is not None and r.interval.low <= r.value <= r.interval.high, name
            assert (r.n, r.n_ref) == (n, n) and r.interval.std > 0, name
        assert out["fid"].interval.repeats == 10 and out["kid"].details["subset_size"] == n // 2
    assert significantly_different(near["fid"], far["fid"])
    assert significantly_different(near["kid"], far["kid"])
    assert not significantly_different(near["fid"], compute_metrics(stats(0.0), real, ("fid",), has_classifier=False)["fid"])


def test_too_few_samples_for_an_interval_keep_the_value_and_say_why():
    import torch

    from evaluation.stats import FeatureStats
    from evaluation.workers import compute_metrics

    g = torch.Generator().manual_seed(0)
    fake, real = FeatureStats(8, keep_features=True), FeatureStats(8, keep_features=True)
    fake.update(torch.randn(6, 8, generator=g), range(6))
    real.update(torch.randn(6, 8, generator=g), range(6))
    out = compute_metrics(fake, real, ("pr",), has_classifier=False)
    assert out["precision"].value is not None and out["precision"].interval is None
    assert "k=3" in out["precision"].details["no_interval"]
