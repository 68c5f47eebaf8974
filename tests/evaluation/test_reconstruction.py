"""Reconstruction metrics for autoencoders: PSNR, SSIM, LPIPS, rFID."""

from __future__ import annotations

import pytest
import torch
from torchmetrics.functional.image import peak_signal_noise_ratio

from evaluation.reconstruction import ReconstructionMeter, reconstruction_metrics
from tests.evaluation.conftest import digit_images


def test_identity_noise_and_psnr_reference(lpips_model):
    x = digit_images((0, 1, 2), 4).float() / 127.5 - 1  # [-1, 1]
    same = reconstruction_metrics(x, x.clone(), lpips=lpips_model)
    assert same["lpips"] == 0 and same["ssim"] == pytest.approx(1.0) and same["n"] == 4
    noisy = (x + 0.2 * torch.randn(x.shape, generator=torch.Generator().manual_seed(0))).clamp(-1, 1)
    m = reconstruction_metrics(x, noisy, lpips=lpips_model, batch_size=3)  # batching does not change averages
    per_image = peak_signal_noise_ratio((noisy + 1) / 2, (x + 1) / 2, data_range=1.0, reduction="none", dim=(1, 2, 3))
    assert m["psnr"] == pytest.approx(per_image.mean().item(), rel=1e-6)
    assert 0 < m["ssim"] < 1 and m["lpips"] > 0
    assert m["rfid"] is None and "not requested" in m["unavailable"]["rfid"]
    # Each mean carries the 95 % interval of a mean of per-image values: ± 1.96 s / sqrt(N).
    half = 1.96 * per_image.std(unbiased=True).item() / len(per_image) ** 0.5
    assert m["psnr_std"] == pytest.approx(half / 1.96, rel=1e-5)
    assert (m["psnr_lo"], m["psnr_hi"]) == pytest.approx((m["psnr"] - half, m["psnr"] + half), rel=1e-5)
    assert m["ssim_lo"] < m["ssim"] < m["ssim_hi"] and m["lpips_lo"] < m["lpips"] < m["lpips_hi"]
    assert "rfid_lo" not in m  # no interval without per-image features: none is made up


def test_one_image_has_no_interval(lpips_model):
    x = digit_images((5,), 1).float() / 127.5 - 1
    m = reconstruction_metrics(x, x.clone(), lpips=lpips_model)
    assert m["n"] == 1 and m["psnr"] is not None and "psnr_lo" not in m and "psnr_std" not in m


@pytest.mark.slow  # 8 images through Inception (fast idle, ~40 s on a loaded 2-core box)
def test_rfid_and_small_images(lpips_model, detector):
    x = digit_images((3, 4), 4).float() / 127.5 - 1
    meter = ReconstructionMeter(lpips=lpips_model, detector=detector)
    meter.update(x, x.clone())
    assert abs(meter.compute()["rfid"]) < 1e-3
    tiny = reconstruction_metrics(x[..., :8, :8], x[..., :8, :8], lpips=lpips_model)
    assert tiny["lpips"] is None and "16-px minimum" in tiny["unavailable"]["lpips"]
    assert tiny["ssim"] is None and "11-px window" in tiny["unavailable"]["ssim"]
