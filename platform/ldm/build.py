"""Build the LDM's networks for a config: the frozen first stage, then the denoiser sized from it.

The one composition of the model shared by training, reloading and benchmarks (STYLE rule 5:
the frozen autoencoder is built here and passed in).
"""

from __future__ import annotations

from pathlib import Path

import torch
from omegaconf import DictConfig
from torch import nn

from platform.ldm.conditioning import CondInput
from platform.ldm.model import LdmModel


def load_frozen_first_stage(checkpoint: Path | str | None, cfg: DictConfig, device: torch.device) -> nn.Module:
    """The first stage as the LDM uses it: loaded from its checkpoint, eval mode, no grads."""
    from platform.first_stage.load import load_first_stage

    first_stage = load_first_stage(Path(checkpoint) if checkpoint else None, cfg)
    return first_stage.to(device).eval().requires_grad_(False)


def build_model(cfg: DictConfig, first_stage: nn.Module, device: torch.device) -> tuple[LdmModel, CondInput]:
    """``LdmModel`` and the frozen conditioning half, sized from ``cfg`` and the first stage."""
    latent_size = cfg.data.resolution // first_stage.f
    cond_input = CondInput(cfg.ldm, latent_size=latent_size, device=device)
    model = LdmModel(cfg.ldm, latent_channels=first_stage.latent_channels, latent_size=latent_size,
                     num_classes=cfg.data.num_classes, text_width=cond_input.text_width)
    null_text = cond_input.null_caption_features()
    if null_text is not None:
        model.conditioner.set_null_text(null_text)
    return model.to(device), cond_input
