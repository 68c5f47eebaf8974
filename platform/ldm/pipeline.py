"""From seeds to pixels: an LDM, its frozen first stage and conditioning, sampled and decoded.

``LdmPipeline.generate(indices, ...)`` gives sample i (base seed s) the same image
whatever the batch or worker split: its noise comes from its own generator (see
``platform.ldm.sampling``) and its condition is a function of i alone (class
i mod num_classes; caption / low-res image i mod the number provided).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import torch
from torch import nn

from platform.config.schema import Conditioning, DiffusionConfig, Sampler
from platform.ldm.conditioning import CondInput
from platform.ldm.model import LdmModel
from platform.ldm.sampling import initial_noise, sample, sample_generators


def to_uint8(x: torch.Tensor) -> torch.Tensor:
    """[-1, 1] float (B, 3, H, W) -> uint8 (B, 3, H, W)."""
    return ((x.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)


@dataclass
class LdmPipeline:
    """A trained (usually EMA) ``LdmModel`` with what it needs to produce images.

    Attributes:
        model: εθ and τθ, in eval mode.
        first_stage: frozen ``FirstStage`` (decode z / scale_factor -> x).
        cond_input: the frozen half of τθ.
        scale_factor: the first stage's latent scale (from its checkpoint).
        diffusion: the schedule the model was trained with.
        num_classes: classes cycled through for class conditioning.
        conditions: captions (text) or low-res images (concat, (N, 3, H/s, W/s)) cycled by index.
    """

    model: LdmModel
    first_stage: nn.Module
    cond_input: CondInput
    scale_factor: float
    diffusion: DiffusionConfig
    num_classes: int = 0
    conditions: Any = None

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def condition_batch(self, indices: Sequence[int]) -> dict[str, Any]:
        """The y of samples ``indices`` (a batch dict for ``CondInput.prepare``)."""
        mode = self.model.mode
        if mode is Conditioning.class_label:
            return {"label": torch.tensor([i % self.num_classes for i in indices])}
        if mode is Conditioning.text:
            return {"caption": [self.conditions[i % len(self.conditions)] for i in indices]}
        if mode is Conditioning.concat:
            return {"lowres": torch.stack([self.conditions[i % len(self.conditions)] for i in indices])}
        return {}

    @torch.no_grad()
    def generate(
        self,
        indices: Sequence[int],
        *,
        seed: int,
        steps: int,
        sampler: str = Sampler.ddim.value,
        eta: float = 0.0,
        guidance_scale: float = 1.0,
        autocast: bool = False,
    ) -> torch.Tensor:
        """Images of samples ``indices``: uint8 (n, 3, H, W) on the CPU.

        ``autocast`` runs the denoiser in bf16 on CUDA; the first-stage decoder always runs in fp32.
        """
        indices = list(indices)
        device = self.device
        gens = sample_generators(seed, indices)
        shape = (self.model.latent_channels, self.model.latent_size, self.model.latent_size)
        noise = initial_noise(gens, shape).to(device)  # (n, c, h, w)
        cond_in = self.cond_input.prepare(self.condition_batch(indices))
        cond = self.model.context(cond_in)
        uncond = None
        if guidance_scale != 1.0 and cond_in is not None:
            uncond = self.model.context(self.model.conditioner.null_input(cond_in, len(indices)))
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=autocast and device.type == "cuda"):
            z = sample(self.model.denoise, noise, cond, steps=steps, diffusion=self.diffusion, sampler=sampler,
                       eta=eta, guidance_scale=guidance_scale, uncond=uncond, generators=gens)
        # Decode in fp32 (autocast off, even under a caller's), as training grids and CPU runs
        # do, so CPU and GPU pixels (and FIDs) compare.
        with torch.autocast(device.type, enabled=False):
            x = self.first_stage.decode(z.float() / self.scale_factor)  # (n, 3, H, W)
        return to_uint8(x).cpu()


def image_grid(images: torch.Tensor, columns: int | None = None) -> np.ndarray:
    """uint8 (n, 3, H, W) -> one uint8 (rows·H, columns·W, 3) grid for the Reporter."""
    n, _, h, w = images.shape
    columns = columns or int(np.ceil(np.sqrt(n)))
    rows = int(np.ceil(n / columns))
    grid = np.zeros((rows * h, columns * w, 3), dtype=np.uint8)
    for k, image in enumerate(images.numpy().transpose(0, 2, 3, 1)):
        r, c = divmod(k, columns)
        grid[r * h:(r + 1) * h, c * w:(c + 1) * w] = image
    return grid
