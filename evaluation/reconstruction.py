"""Autoencoder reconstruction metrics (paper Tab. 8): PSNR, SSIM, LPIPS and rFID.

Images are float (B, 3, H, W) in ``value_range`` (default [-1, 1], the first stage's
range). PSNR and SSIM are per-image (torchmetrics, data range 1 on [0, 1]) and averaged
over images; LPIPS is the offline VGG module; rFID is the FID between the Inception
statistics of originals and reconstructions, accumulated over batches.

PSNR, SSIM and LPIPS are means of per-image values, so each carries the interval of a
mean: ± Z·s/√N with s the per-image standard deviation (``evaluation.uncertainty.
PER_IMAGE_MEAN``). rFID has no interval here: its half-subsample interval would need every
image's 2048 features, which the meter does not keep.
"""

from __future__ import annotations

from typing import Optional

import math

import torch
from torchmetrics.functional.image import peak_signal_noise_ratio, structural_similarity_index_measure

from evaluation.detector import InceptionDetector
from evaluation.lpips import LPIPS
from evaluation.lpips import MIN_SIZE as LPIPS_MIN_SIZE
from evaluation.metrics import frechet_distance
from evaluation.stats import FeatureStats
from evaluation.uncertainty import PER_IMAGE_MEAN, Interval

_SSIM_KERNEL = 11  # torchmetrics' default Gaussian window (Wang et al. 2004)


def to_uint8(x: torch.Tensor, value_range: tuple[float, float] = (-1.0, 1.0)) -> torch.Tensor:
    """Float images in ``value_range`` → uint8 [0, 255] (rounded, clamped), for the detector."""
    lo, hi = value_range
    return ((x.detach().float() - lo) / (hi - lo) * 255).round().clamp(0, 255).to(torch.uint8)


class ReconstructionMeter:
    """Accumulates reconstruction metrics over batches; :meth:`compute` gives the averages.

    Args:
        lpips: an LPIPS module (default: built from the offline assets on first use).
        detector: Inception detector for rFID (None: rFID not computed).
        value_range: the images' range.
    """

    def __init__(self, *, lpips: Optional[LPIPS] = None, detector: Optional[InceptionDetector] = None,
                 value_range: tuple[float, float] = (-1.0, 1.0)) -> None:
        self.lpips = lpips
        self.detector = detector
        self.value_range = value_range
        self.n = 0
        self.values: dict[str, list[float]] = {"psnr": [], "ssim": [], "lpips": []}  # per image
        self.unavailable: dict[str, str] = {}
        self.real_stats = FeatureStats(2048)
        self.recon_stats = FeatureStats(2048)

    @torch.no_grad()
    def update(self, real: torch.Tensor, recon: torch.Tensor) -> None:
        if real.shape != recon.shape or real.dim() != 4:
            raise ValueError(f"real and recon must be equal (B, C, H, W) batches, got {tuple(real.shape)} and {tuple(recon.shape)}")
        lo, hi = self.value_range
        a = ((real.float() - lo) / (hi - lo)).clamp(0, 1)
        b = ((recon.float() - lo) / (hi - lo)).clamp(0, 1)
        batch = real.shape[0]
        self.values["psnr"] += peak_signal_noise_ratio(b, a, data_range=1.0, reduction="none", dim=(1, 2, 3)).tolist()
        if min(real.shape[-2:]) >= _SSIM_KERNEL:
            self.values["ssim"] += structural_similarity_index_measure(b, a, data_range=1.0, reduction="none").tolist()
        else:
            self.unavailable["ssim"] = f"images of {tuple(real.shape[-2:])} px are smaller than SSIM's {_SSIM_KERNEL}-px window"
        if min(real.shape[-2:]) >= LPIPS_MIN_SIZE:
            if self.lpips is None:
                from evaluation.lpips import build_lpips

                self.lpips = build_lpips(device=real.device)
            self.values["lpips"] += self.lpips(a * 2 - 1, b * 2 - 1).flatten().tolist()  # LPIPS takes [-1, 1]
        else:
            self.unavailable["lpips"] = f"images of {tuple(real.shape[-2:])} px are smaller than LPIPS-VGG's {LPIPS_MIN_SIZE}-px minimum"
        if self.detector is not None:
            idx = range(self.n, self.n + batch)
            self.real_stats.update(self.detector(to_uint8(a, (0, 1)))[0], idx)
            self.recon_stats.update(self.detector(to_uint8(b, (0, 1)))[0], idx)
        self.n += batch

    def compute(self) -> dict:
        """``{"psnr", "ssim", "lpips", "rfid": float or None, "n": N, "unavailable": {name: reason}}``,
        plus ``<name>_std``, ``<name>_lo``, ``<name>_hi`` (the 95 % interval of the mean) for
        PSNR, SSIM and LPIPS when N >= 2."""
        if self.n == 0:
            raise ValueError("no batches were added to the reconstruction meter")
        out: dict = {}
        for name, values in self.values.items():
            out[name] = math.fsum(values) / len(values) if values else None
            interval = mean_interval(values)
            if interval is not None:
                out.update({f"{name}_std": interval.std, f"{name}_lo": interval.low, f"{name}_hi": interval.high})
        unavailable = dict(self.unavailable)
        for name in unavailable:
            out[name] = None
        out["rfid"] = None
        if self.detector is None:
            unavailable["rfid"] = "not requested (pass an Inception detector / rfid=True)"
        elif self.n < 2:
            unavailable["rfid"] = f"rFID needs at least 2 images, have {self.n}"
        else:
            (m1, s1), (m2, s2) = self.real_stats.mean_cov(), self.recon_stats.mean_cov()
            out["rfid"] = frechet_distance(m1.numpy(), s1.numpy(), m2.numpy(), s2.numpy())
        out["n"] = self.n
        out["unavailable"] = unavailable
        return out


def mean_interval(values: list[float]) -> Optional[Interval]:
    """The 95 % interval of the mean of i.i.d. per-image values: mean ± Z·s/√N (s with
    ddof = 1); None for fewer than 2 values."""
    n = len(values)
    if n < 2:
        return None
    mean = math.fsum(values) / n
    std = math.sqrt(math.fsum((v - mean) ** 2 for v in values) / (n - 1) / n)
    return Interval.around(mean, std, PER_IMAGE_MEAN, n)


def reconstruction_metrics(
    real: torch.Tensor,
    recon: torch.Tensor,
    *,
    lpips: Optional[LPIPS] = None,
    rfid: bool = False,
    detector: Optional[InceptionDetector] = None,
    value_range: tuple[float, float] = (-1.0, 1.0),
    batch_size: int = 64,
) -> dict:
    """PSNR / SSIM / LPIPS (and rFID when ``rfid``) of ``recon`` against ``real``.

    Returns:
        ``{"psnr", "ssim", "lpips", "rfid", "n", "unavailable"}``; a metric that cannot be
        computed is None with its reason under ``unavailable``. rFID at small N is biased
        upwards: compare only at equal N (DESIGN.md §2).
    """
    if rfid and detector is None:
        detector = InceptionDetector(device=real.device, batch_size=batch_size)
    meter = ReconstructionMeter(lpips=lpips, detector=detector if rfid else None, value_range=value_range)
    for a, b in zip(real.split(batch_size), recon.split(batch_size)):
        meter.update(a, b)
    return meter.compute()
