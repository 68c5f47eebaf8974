"""Evaluation fixtures: a private asset cache and torch hub per session (weights converted once)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch


@pytest.fixture(scope="session")
def eval_cache(tmp_path_factory) -> Path:
    """``LDM_EVAL_CACHE`` and ``TORCH_HOME`` pointed at session directories.

    Tests then never read or write the user's caches, and behave the same whether or not
    the full torch-fidelity weights happen to be on this machine (offline path only).
    """
    path = tmp_path_factory.mktemp("eval_cache")
    saved = {k: os.environ.get(k) for k in ("LDM_EVAL_CACHE", "TORCH_HOME")}
    os.environ["LDM_EVAL_CACHE"] = str(path)
    os.environ["TORCH_HOME"] = str(path / "torch_home")
    yield path
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


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
