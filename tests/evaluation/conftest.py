"""Evaluation fixtures: the session's private asset cache, the detector and LPIPS (weights converted once)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch


@pytest.fixture(scope="session")
def eval_cache(cache_root) -> Path:
    """``$LDM_EVAL_CACHE``: the session's private cache (tests/conftest.py), never the user's.

    Tests behave the same whether or not the full torch-fidelity weights happen to be on
    this machine: only the offline path is used.
    """
    return Path(os.environ["LDM_EVAL_CACHE"])


@pytest.fixture(scope="session")
def inception_asset(eval_cache):
    """The FID Inception weights, converted offline once per session."""
    from evaluation.assets import resolve_inception

    return resolve_inception(allow_download=False)


@pytest.fixture(scope="session")
def detector(inception_asset):
    from evaluation.detector import InceptionDetector

    return InceptionDetector(inception_asset, device="cpu", batch_size=16)


@pytest.fixture(scope="session")
def lpips_model(eval_cache):
    from evaluation.lpips import LPIPS

    return LPIPS.from_offline_assets(allow_download=False)


def digit_images(digits: tuple[int, ...], n: int, size: int = 32) -> torch.Tensor:
    """uint8 (n, 3, size, size) scikit-learn digits of the given classes (natural-ish images)."""
    import torch.nn.functional as F
    from sklearn.datasets import load_digits

    data = load_digits()
    chosen = [i for i, t in enumerate(data.target) if t in digits][:n]
    x = torch.tensor(data.images[chosen], dtype=torch.float32)[:, None] / 16
    x = F.interpolate(x, size=size, mode="bilinear", align_corners=False)
    return (x.expand(-1, 3, -1, -1) * 255).round().clamp(0, 255).to(torch.uint8).contiguous()
