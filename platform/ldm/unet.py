"""The LDM denoiser εθ(z_t, t, y): a diffusers UNet sized from ``ldm.unet`` (paper Tab. 13).

Cross-attention conditioning (class, text; paper §3.3, Eq. 3) uses
``UNet2DConditionModel`` with ``CrossAttn*Block2D`` at the attention resolutions;
unconditional and concat (super-resolution) models use ``UNet2DModel`` with
self-attention blocks there (concat widens ``conv_in`` by the conditioning channels).

``attention_resolutions`` are *spatial sizes* of feature maps (level i of a latent of
side h has side h / 2**i). Resolution levels that would fall below one pixel, or that
would halve an odd side, are dropped: at 32 px with f = 32 the latent is 1x1 and the
UNet keeps a single level (no down/up-sampling), whatever ``channel_mult`` asks for.
"""

from __future__ import annotations

import math
from typing import Sequence

from diffusers import UNet2DConditionModel, UNet2DModel
from torch import nn

from platform.config.schema import UNetConfig


def usable_levels(latent_size: int, channel_mult: Sequence[int]) -> list[int]:
    """The prefix of ``channel_mult`` whose levels have an integer side of at least 1 px.

    Level i has side ``latent_size / 2**i``; a level is kept only if every halving
    before it divides evenly (diffusers' stride-2 convs would otherwise mis-align the
    skip connections).
    """
    kept = [channel_mult[0]]
    side = latent_size
    for mult in channel_mult[1:]:
        if side % 2 or side // 2 < 1:
            break
        side //= 2
        kept.append(mult)
    return kept


def _groups(channels: Sequence[int]) -> int:
    """GroupNorm groups: 32 as in the paper's UNet, fewer where widths are tiny.

    At least two channels per group: a 1x1 level (f = 32 at 32 px) would otherwise
    normalise single values, which GroupNorm rejects for a batch of one.
    """
    return math.gcd(32, *(c // 2 for c in channels))


def build_unet(
    cfg: UNetConfig,
    *,
    latent_channels: int,
    latent_size: int,
    context_dim: int | None,
    extra_in_channels: int = 0,
) -> nn.Module:
    """Build the denoiser for latents of shape (latent_channels, latent_size, latent_size).

    Args:
        cfg: ``ldm.unet`` (channels, channel_mult, num_res_blocks, attention_resolutions,
            num_heads, transformer_depth).
        latent_channels: c of z (the first stage's latent channels; 3 for pixels).
        latent_size: h = data resolution / f.
        context_dim: width of τθ(y) for cross-attention, or None for a UNet without it.
        extra_in_channels: channels concatenated to z_t (concat conditioning).
    """
    mults = usable_levels(latent_size, list(cfg.channel_mult))
    widths = tuple(cfg.channels * m for m in mults)
    sides = [latent_size // 2**i for i in range(len(mults))]
    attn = [side in set(cfg.attention_resolutions) for side in sides]
    common = dict(
        sample_size=latent_size,
        in_channels=latent_channels + extra_in_channels,
        out_channels=latent_channels,
        block_out_channels=widths,
        layers_per_block=cfg.num_res_blocks,
        norm_num_groups=_groups(widths),
    )
    if context_dim is None:
        return UNet2DModel(
            down_block_types=tuple("AttnDownBlock2D" if a else "DownBlock2D" for a in attn),
            up_block_types=tuple("AttnUpBlock2D" if a else "UpBlock2D" for a in reversed(attn)),
            # UNet2DModel's argument really is the per-head width.
            attention_head_dim=max(1, cfg.channels // cfg.num_heads),
            **common,
        )
    return UNet2DConditionModel(
        down_block_types=tuple("CrossAttnDownBlock2D" if a else "DownBlock2D" for a in attn),
        up_block_types=tuple("CrossAttnUpBlock2D" if a else "UpBlock2D" for a in reversed(attn)),
        cross_attention_dim=context_dim,
        # diffusers' historical misnomer: for UNet2DConditionModel this is the head count.
        attention_head_dim=cfg.num_heads,
        transformer_layers_per_block=cfg.transformer_depth,
        **common,
    )
