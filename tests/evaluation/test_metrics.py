"""Pure metric functions: closed forms, limiting cases, and torch-fidelity's own functions."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from evaluation import metrics as M
from evaluation.stats import FeatureStats


def test_fid_of_two_gaussians_matches_closed_form():
    rng = np.random.default_rng(0)
    d = 16
    mu1, mu2 = rng.normal(size=d), rng.normal(size=d)
    var1, var2 = rng.uniform(0.5, 2, d), rng.uniform(0.5, 2, d)
    # Diagonal covariances: Tr(Σ1 + Σ2 - 2 (Σ1Σ2)^½) = Σ (σ1 + σ2 - 2 √(σ1σ2)).
    expected = np.sum((mu1 - mu2) ** 2) + np.sum(var1 + var2 - 2 * np.sqrt(var1 * var2))
    assert M.frechet_distance(mu1, np.diag(var1), mu2, np.diag(var2)) == pytest.approx(expected, rel=1e-10)
    # A full covariance against itself, shifted mean: only ‖Δμ‖² remains.
    a = rng.normal(size=(d, d))
    sigma = a @ a.T + np.eye(d)
    assert M.frechet_distance(mu1, sigma, mu2, sigma) == pytest.approx(np.sum((mu1 - mu2) ** 2), rel=1e-6)
    assert abs(M.frechet_distance(mu1, sigma, mu1, sigma)) < 1e-8


def test_streaming_statistics_merge_equals_numpy():
    x = torch.randn(50, 8, generator=torch.Generator().manual_seed(0)) * 3 + 1
    parts = []
    for lo, hi in ((30, 50), (0, 13), (13, 30)):  # any split, any order
        s = FeatureStats(8, keep_features=True)
        s.update(x[lo:hi], range(lo, hi))
        parts.append(s)
    merged = FeatureStats.merge(parts)
    mu, cov = merged.mean_cov()
    np.testing.assert_allclose(mu.numpy(), x.double().numpy().mean(0), rtol=1e-12)
    np.testing.assert_allclose(cov.numpy(), np.cov(x.double().numpy(), rowvar=False), rtol=1e-10, atol=1e-12)
    assert torch.equal(merged.features, x) and merged.count == 50
    with pytest.raises(ValueError, match="overlap"):
        FeatureStats.merge([parts[0], parts[0]])


def test_kid_matches_torch_fidelity():
    from torch_fidelity.metric_kid import kid_features_to_metric

    g = torch.Generator().manual_seed(0)
    f1, f2 = torch.rand(60, 32, generator=g), torch.rand(50, 32, generator=g) + 0.1
    mean, std, m = M.kernel_inception_distance(f1, f2, subsets=20, subset_size=40)
    ref = kid_features_to_metric(f1, f2, kid_subsets=20, kid_subset_size=40, verbose=False)
    assert m == 40
    assert mean == pytest.approx(ref["kernel_inception_distance_mean"], rel=1e-5)
    assert std == pytest.approx(ref["kernel_inception_distance_std"], rel=1e-4)


def test_precision_recall_limits_and_torch_fidelity():
    from torch_fidelity.metric_prc import prc_features_to_metric

    g = torch.Generator().manual_seed(0)
    x = torch.randn(40, 16, generator=g)
    assert M.precision_recall(x, x.clone(), k=3) == (1.0, 1.0)
    far = torch.randn(40, 16, generator=g) + 100.0
    assert M.precision_recall(x, far, k=3) == (0.0, 0.0)
    y = torch.randn(30, 16, generator=g) * 1.3 + 0.3
    ref = prc_features_to_metric(x, y, prc_neighborhood=3, prc_batch_size=10000, save_cpu_ram=False, verbose=False)
    assert M.precision_recall(x, y, k=3) == pytest.approx((ref["precision"], ref["recall"]), abs=1e-12)
    with pytest.raises(ValueError, match="k=3"):
        M.precision_recall(x[:3], y, k=3)


def test_inception_score_formula():
    # Confident, evenly spread predictions over C classes per split: IS = C exactly.
    classes, per_split, splits = 5, 20, 10
    labels = torch.arange(per_split * splits) % classes
    logits = torch.full((per_split * splits, 1008), -40.0)  # exp(-40): ~0 but finite logs
    logits[torch.arange(len(labels)), labels] = 0.0
    mean, std = M.inception_score(logits, splits=splits, shuffle=False)
    assert mean == pytest.approx(classes, rel=1e-6) and std == pytest.approx(0, abs=1e-6)
    # Identical predictions carry no information: IS = 1.
    assert M.inception_score(torch.zeros(50, 1008))[0] == pytest.approx(1.0)
    # Random logits: exp(E KL(p(y|x) || p(y))) per split, computed directly; and torch-fidelity.
    from torch_fidelity.metric_isc import isc_features_to_metric

    x = torch.randn(100, 1008, generator=torch.Generator().manual_seed(0)) * 3
    p = x.double().softmax(1)
    direct = [float(torch.exp((p[i:i + 10] * (p[i:i + 10].log() - p[i:i + 10].mean(0).log())).sum(1).mean())) for i in range(0, 100, 10)]
    assert M.inception_score(x, shuffle=False)[0] == pytest.approx(float(np.mean(direct)), rel=1e-9)
    ref = isc_features_to_metric(x, splits=10, shuffle=True, rng_seed=2020)
    assert M.inception_score(x) == pytest.approx((ref["inception_score_mean"], ref["inception_score_std"]), rel=1e-9)


def test_compute_metrics_reports_n_and_unavailable_reasons():
    from evaluation.detector import IS_UNAVAILABLE
    from evaluation.workers import compute_metrics

    g = torch.Generator().manual_seed(0)
    d = 64  # the functions are dimension-agnostic; 2048² eigenvalues would dominate the test
    fake = FeatureStats(d, keep_features=True, keep_logits=True)
    fake.update(torch.rand(20, d, generator=g), range(20), logits=torch.randn(20, 1008, generator=g))
    real = FeatureStats(d, keep_features=True)
    real.update(torch.rand(3, d, generator=g), range(3))
    # A zero / missing classifier must never produce IS (it would read 1.0).
    out = compute_metrics(fake, real, ("fid", "pr", "is"), has_classifier=False)
    assert out["is"].value is None and out["is"].unavailable == IS_UNAVAILABLE and out["is"].n == 20
    assert out["fid"].value is not None and (out["fid"].n, out["fid"].n_ref) == (20, 3)
    assert out["precision"].value is None and "k=3" in out["precision"].unavailable
    out = compute_metrics(fake, real, ("is",), has_classifier=True)
    assert out["is"].value == pytest.approx(M.inception_score(fake.logits)[0]) and out["is"].details["splits"] == 10
