"""Streaming, mergeable feature statistics (the edm2 pattern: detector → statistics → metric).

FID needs only the first two moments, kept as float64 Σx and XᵀX plus the count, which
add across batches and workers. KID and precision/recall need the raw features, and IS
the logits; those are kept (tagged with their sample indices) only when asked for, and
put back in sample order on merge so any split across workers gives the same arrays.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, Optional

import torch


@dataclass
class FeatureStats:
    """Sufficient statistics of a set of feature vectors.

    Attributes:
        dim: feature dimension D.
        count: number of vectors seen.
        sum: (D,) float64 Σx.
        gram: (D, D) float64 XᵀX.
        keep_features / keep_logits: whether raw rows are stored.
        indices: (n,) int64 sample index of each stored row.
        features: (n, D) float32 raw features, or None.
        logits: (n, C) float32 unbiased Inception logits, or None.
    """

    dim: int
    keep_features: bool = False
    keep_logits: bool = False
    count: int = 0
    sum: torch.Tensor = field(default=None)  # type: ignore[assignment]
    gram: torch.Tensor = field(default=None)  # type: ignore[assignment]
    indices: torch.Tensor = field(default=None)  # type: ignore[assignment]
    features: Optional[torch.Tensor] = None
    logits: Optional[torch.Tensor] = None

    def __post_init__(self) -> None:
        if self.sum is None:
            self.sum = torch.zeros(self.dim, dtype=torch.float64)
        if self.gram is None:
            self.gram = torch.zeros(self.dim, self.dim, dtype=torch.float64)
        if self.indices is None:
            self.indices = torch.zeros(0, dtype=torch.int64)
        if self.keep_features and self.features is None:
            self.features = torch.zeros(0, self.dim)

    def update(self, features: torch.Tensor, indices: Iterable[int], logits: Optional[torch.Tensor] = None) -> None:
        """Add a (n, D) batch whose rows are the samples ``indices``."""
        if features.dim() != 2 or features.shape[1] != self.dim:
            raise ValueError(f"expected (n, {self.dim}) features, got {tuple(features.shape)}")
        x = features.detach().to("cpu", torch.float64)
        self.count += x.shape[0]
        self.sum += x.sum(0)
        self.gram += x.T @ x
        idx = torch.as_tensor(list(indices), dtype=torch.int64)
        if idx.numel() != x.shape[0]:
            raise ValueError(f"{idx.numel()} indices for {x.shape[0]} feature rows")
        self.indices = torch.cat([self.indices, idx])
        if self.keep_features:
            self.features = torch.cat([self.features, features.detach().float().cpu()])
        if self.keep_logits:
            if logits is None:
                raise ValueError("these statistics keep logits (for IS) but none were given")
            self.logits = logits.detach().float().cpu() if self.logits is None else torch.cat([self.logits, logits.float().cpu()])

    @classmethod
    def merge(cls, parts: list["FeatureStats"]) -> "FeatureStats":
        """Combine workers' statistics; stored rows come out sorted by sample index."""
        if not parts:
            raise ValueError("nothing to merge")
        first = parts[0]
        out = cls(first.dim, keep_features=first.keep_features, keep_logits=first.keep_logits)
        for p in parts:
            if (p.dim, p.keep_features, p.keep_logits) != (first.dim, first.keep_features, first.keep_logits):
                raise ValueError("cannot merge statistics of different kinds")
            out.count += p.count
            out.sum += p.sum
            out.gram += p.gram
        out.indices = torch.cat([p.indices for p in parts])
        order = torch.argsort(out.indices, stable=True)
        out.indices = out.indices[order]
        if len(torch.unique(out.indices)) != len(out.indices):
            raise ValueError("merged statistics contain a sample index twice: worker slices overlap")
        if first.keep_features:
            out.features = torch.cat([p.features for p in parts])[order]
        if first.keep_logits:
            out.logits = torch.cat([p.logits for p in parts if p.logits is not None])[order]
        return out

    def mean_cov(self) -> tuple[torch.Tensor, torch.Tensor]:
        """μ (D,) and the unbiased covariance Σ (D, D), float64 (as ``np.cov``)."""
        if self.count < 2:
            raise ValueError(f"a covariance needs at least 2 samples, have {self.count}")
        mu = self.sum / self.count
        cov = (self.gram - self.count * torch.outer(mu, mu)) / (self.count - 1)
        return mu, cov

    def to_dict(self) -> dict:
        """Plain tensors/ints for ``torch.save`` (reference cache) and Ray transport."""
        return {k: getattr(self, k) for k in ("dim", "keep_features", "keep_logits", "count", "sum", "gram", "indices", "features", "logits")}

    @classmethod
    def from_dict(cls, d: dict) -> "FeatureStats":
        return cls(**d)
