"""Pure metric functions on features / statistics, with torch-fidelity 0.4 semantics.

Conventions follow ``torch_fidelity.calculate_metrics(input1=fake, input2=real)`` so the
numbers are comparable with published torch-fidelity results (DESIGN.md §2).
"""

from __future__ import annotations

import numpy as np
import torch

DEFAULT_SEED = 2020  # torch-fidelity's rng_seed for KID subsets and the IS shuffle


# FID (Heusel et al. 2017): ‖μ₁ − μ₂‖² + Tr(Σ₁ + Σ₂ − 2 (Σ₁Σ₂)^½).
def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray) -> float:
    """Fréchet distance between two Gaussians (float64).

    Tr (Σ₁Σ₂)^½ is the sum of square roots of the eigenvalues of Σ₁Σ₂ (torch-fidelity's
    formulation; avoids sqrtm's complex-part fix-ups).
    """
    mu1, mu2 = np.asarray(mu1, np.float64), np.asarray(mu2, np.float64)
    sigma1, sigma2 = np.asarray(sigma1, np.float64), np.asarray(sigma2, np.float64)
    if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape:
        raise ValueError(f"statistics of different dimensions: {mu1.shape} vs {mu2.shape}")
    diff = mu1 - mu2
    tr_covmean = np.sum(np.sqrt(np.linalg.eigvals(sigma1 @ sigma2).astype(np.complex128)).real)
    return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2.0 * tr_covmean)


def frechet_distance_features(fake: np.ndarray, real: np.ndarray) -> float:
    """FID between two sets of feature rows ((n1, D) and (n2, D)), float64.

    Same quantity as :func:`frechet_distance` of their means and unbiased covariances,
    computed in sample space, which is much cheaper when n < D (subset FIDs for intervals
    and FID∞): with Σ₁ = AAᵀ, Σ₂ = BBᵀ (A = centred rows / √(n₁−1), transposed),
    the eigenvalues of Σ₁Σ₂ are the squared singular values of BᵀA, so
    Tr (Σ₁Σ₂)^½ = ‖BᵀA‖_* and Tr Σ = ‖A‖²_F.
    """
    x, y = np.asarray(fake, np.float64), np.asarray(real, np.float64)
    if x.ndim != 2 or y.ndim != 2 or x.shape[1] != y.shape[1] or min(len(x), len(y)) < 2:
        raise ValueError(f"FID needs two (n >= 2, D) feature sets of one D, got {x.shape} and {y.shape}")
    if min(len(x), len(y)) >= x.shape[1]:  # no saving: use the D x D form
        return frechet_distance(x.mean(0), np.cov(x, rowvar=False), y.mean(0), np.cov(y, rowvar=False))
    a = (x - x.mean(0)) / np.sqrt(len(x) - 1)  # (n1, D)
    b = (y - y.mean(0)) / np.sqrt(len(y) - 1)  # (n2, D)
    cross = b @ a.T  # (n2, n1) = BᵀA in the notation above
    gram = cross.T @ cross if cross.shape[1] <= cross.shape[0] else cross @ cross.T
    tr_covmean = np.sqrt(np.clip(np.linalg.eigvalsh(gram), 0.0, None)).sum()  # negatives are rounding
    diff = x.mean(0) - y.mean(0)
    return float(diff @ diff + (a * a).sum() + (b * b).sum() - 2.0 * tr_covmean)


# KID (Bińkowski et al. 2018): unbiased MMD² with k(x, y) = (xᵀy / d + 1)³, averaged over
# random subsets. Same subset draws as torch-fidelity (RandomState(seed), fake then real).
def kernel_inception_distance(
    fake: torch.Tensor,
    real: torch.Tensor,
    *,
    subsets: int = 100,
    subset_size: int = 1000,
    seed: int = DEFAULT_SEED,
) -> tuple[float, float, int]:
    """KID mean and std over subsets; returns (mean, std, subset size used).

    The subset size is capped at the smaller set (torch-fidelity would refuse instead);
    the size used is returned so it can be reported next to the value.
    """
    f1, f2 = fake.float().cpu().numpy(), real.float().cpu().numpy()
    m = min(subset_size, len(f1), len(f2))
    if m < 2:
        raise ValueError(f"KID needs at least 2 samples per set, have {len(f1)} fake and {len(f2)} real")
    rng = np.random.RandomState(seed)
    gamma = 1.0 / f1.shape[1]
    mmds = np.zeros(subsets)
    for i in range(subsets):
        x = f1[rng.choice(len(f1), m, replace=False)]
        y = f2[rng.choice(len(f2), m, replace=False)]
        k_xx = (x @ x.T * gamma + 1) ** 3
        k_yy = (y @ y.T * gamma + 1) ** 3
        k_xy = (x @ y.T * gamma + 1) ** 3
        mmds[i] = _mmd2_unbiased(k_xx, k_xy, k_yy)
    return float(np.mean(mmds)), float(np.std(mmds)), m


def _mmd2_unbiased(k_xx: np.ndarray, k_xy: np.ndarray, k_yy: np.ndarray) -> float:
    m = k_xx.shape[0]
    kt_xx = (k_xx.sum(axis=1) - np.diagonal(k_xx)).sum()  # off-diagonal sums
    kt_yy = (k_yy.sum(axis=1) - np.diagonal(k_yy)).sum()
    return float((kt_xx + kt_yy) / (m * (m - 1)) - 2 * k_xy.sum(axis=0).sum() / (m * m))


# Improved precision and recall (Kynkäänniemi et al. 2019): a sample is covered by the other
# set's manifold if it lies within some sample's k-NN radius (k = 3, as in ADM's evaluator).
def precision_recall(fake: torch.Tensor, real: torch.Tensor, *, k: int = 3, batch_size: int = 10000) -> tuple[float, float]:
    """(precision, recall) of ``fake`` against ``real`` features."""
    if min(len(fake), len(real)) <= k:
        raise ValueError(f"precision/recall with k={k} needs more than {k} samples per set, have {len(fake)} fake, {len(real)} real")
    fake, real = fake.float().cpu(), real.float().cpu()
    radii_fake = _cdist(fake, fake, batch_size).kthvalue(k + 1).values  # +1: the point itself
    radii_real = _cdist(real, real, batch_size).kthvalue(k + 1).values
    real_to_fake = _cdist(real, fake, batch_size)  # (n_real, n_fake)
    recall = (real_to_fake <= radii_fake).any(dim=1).float().mean().item()
    precision = (real_to_fake.T <= radii_real).any(dim=1).float().mean().item()
    return precision, recall


def _cdist(a: torch.Tensor, b: torch.Tensor, batch_size: int) -> torch.Tensor:
    return torch.cat([torch.cat([torch.cdist(x, y) for y in b.split(batch_size)], dim=1) for x in a.split(batch_size)])


# Inception Score (Salimans et al. 2016): exp E_x KL(p(y|x) ‖ p(y)), mean ± std over splits.
def inception_score(logits: torch.Tensor, *, splits: int = 10, shuffle: bool = True, seed: int = DEFAULT_SEED) -> tuple[float, float]:
    """IS from unbiased Inception logits (N, 1008), torch-fidelity's split scheme."""
    n = logits.shape[0]
    if n < splits:
        raise ValueError(f"IS with {splits} splits needs at least {splits} samples, have {n}")
    if shuffle:
        logits = logits[np.random.RandomState(seed).permutation(n)]
    logits = logits.double()
    p, log_p = logits.softmax(dim=1), logits.log_softmax(dim=1)
    scores = []
    for i in range(splits):
        lo, hi = i * n // splits, (i + 1) * n // splits
        q = p[lo:hi].mean(dim=0, keepdim=True)
        scores.append((p[lo:hi] * (log_p[lo:hi] - q.log())).sum(dim=1).mean().exp().item())
    return float(np.mean(scores)), float(np.std(scores))
