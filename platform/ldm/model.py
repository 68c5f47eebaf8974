"""``LdmModel``: the trained part of an LDM, τθ (conditioner) + εθ (UNet), one ``nn.Module``.

``forward(z_t, t, cond_input, drop)`` runs both (training: one module for DDP and EMA);
samplers call ``denoise(z_t, t, context)`` with the context computed once per batch.
The first stage and frozen text encoder are not part of it: they are built where the
stage is composed and passed in (STYLE rule 5).
"""

from __future__ import annotations

import torch
from torch import nn

from platform.config.schema import Conditioning, LdmConfig
from platform.ldm.conditioning import Conditioner
from platform.ldm.unet import build_unet


class LdmModel(nn.Module):
    """εθ(z_t, t, τθ(y)) for latents of shape (latent_channels, latent_size, latent_size)."""

    def __init__(
        self,
        cfg: LdmConfig,
        *,
        latent_channels: int,
        latent_size: int,
        num_classes: int,
        text_width: int | None = None,
    ) -> None:
        super().__init__()
        self.mode = Conditioning(cfg.conditioning)
        self.latent_channels = latent_channels
        self.latent_size = latent_size
        self.conditioner = Conditioner(cfg, num_classes=num_classes, text_width=text_width)
        self.unet = build_unet(
            cfg.unet,
            latent_channels=latent_channels,
            latent_size=latent_size,
            context_dim=self.conditioner.context_dim,
            extra_in_channels=self.conditioner.extra_channels,
        )

    def context(self, cond_input: torch.Tensor | None, drop: torch.Tensor | None = None) -> torch.Tensor | None:
        """τθ(y): (B, T, D) cross-attention context, (B, 3, h, w) concat image, or None."""
        return self.conditioner(cond_input, drop)

    def denoise(self, z_t: torch.Tensor, t: torch.Tensor, context: torch.Tensor | None) -> torch.Tensor:
        """The UNet's prediction (ε or v) for z_t (B, c, h, w) at integer steps t (B,)."""
        if self.mode is Conditioning.concat:
            return self.unet(torch.cat([z_t, context.to(z_t.dtype)], dim=1), t).sample
        if self.conditioner.context_dim is None:
            return self.unet(z_t, t).sample
        return self.unet(z_t, t, encoder_hidden_states=context).sample

    def forward(
        self,
        z_t: torch.Tensor,
        t: torch.Tensor,
        cond_input: torch.Tensor | None = None,
        drop: torch.Tensor | None = None,
    ) -> torch.Tensor:
        return self.denoise(z_t, t, self.context(cond_input, drop))
