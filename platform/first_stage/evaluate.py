"""Reconstruction quality of a first stage on the held-out split (paper Tab. 8 columns).

Runs once at the end of training on rank 0: x̃ = D(E(x)) for ``eval.num_samples``
images of ``data.eval_shards``, streamed through ``evaluation.reconstruction``'s meter
(PSNR, SSIM, LPIPS, rFID), plus a grid of inputs over reconstructions for the dashboard.
"""

from __future__ import annotations

import numpy as np
import torch
from omegaconf import DictConfig
from torch import nn

from platform.first_stage.model import FirstStage

GRID_COLUMNS = 8


def reconstruction_grid(real: torch.Tensor, recon: torch.Tensor, columns: int = GRID_COLUMNS) -> np.ndarray:
    """Inputs (top row) over reconstructions (bottom row), uint8 (2·H, columns·W, 3)."""
    pair = torch.stack([real[:columns], recon[:columns]])  # (2, n, 3, H, W) in [-1, 1]
    pixels = ((pair.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    rows, n, c, h, w = pixels.shape
    return pixels.permute(0, 3, 1, 4, 2).reshape(rows * h, n * w, c).cpu().numpy()


@torch.no_grad()
def evaluate_reconstruction(
    model: FirstStage,
    cfg: DictConfig,
    device: torch.device,
    *,
    lpips: nn.Module | None = None,
    rfid: bool = True,
) -> tuple[dict[str, float], dict[str, str], np.ndarray]:
    """Reconstruction metrics on ``data.eval_shards``.

    Args:
        model: the trained first stage, eval mode.
        cfg: the run config (``data.eval_shards``, ``eval.num_samples``, ``eval.batch_size``).
        lpips: an LPIPS module to reuse (e.g. the training loss's); default: built offline.
        rfid: also compute rFID (Inception features of originals vs reconstructions).
    Returns:
        ``({"psnr", "ssim", "lpips", "rfid", "n"}`` minus what could not be computed,
        ``{metric: why it is missing}``, the reconstruction grid).
    """
    from evaluation.detector import InceptionDetector
    from evaluation.reconstruction import ReconstructionMeter
    from platform.data.loader import make_loader

    detector = InceptionDetector(device=device, batch_size=cfg.eval.batch_size) if rfid else None
    meter = ReconstructionMeter(lpips=lpips, detector=detector)
    loader = make_loader(cfg.data.eval_shards, batch_size=cfg.eval.batch_size, shuffle=False,
                         resolution=cfg.data.resolution, on_error=cfg.data.on_error)
    grid = None
    for batch in loader:
        x = batch["image"][: cfg.eval.num_samples - meter.n].to(device)  # (B, 3, H, W) in [-1, 1]
        rec = model.decode(model.encode(x)).float().clamp(-1, 1)
        meter.update(x, rec)
        grid = reconstruction_grid(x, rec) if grid is None else grid
        if meter.n >= cfg.eval.num_samples:
            break
    if grid is None:
        raise RuntimeError(f"{cfg.data.eval_shards} yielded no images to reconstruct")
    result = meter.compute()
    missing = dict(result.pop("unavailable"))
    metrics = {name: float(value) for name, value in result.items() if value is not None}
    return metrics, missing, grid
