"""First-stage autoencoders E, D (paper §3.1): KL- or VQ-regularised, or the f = 1 identity.

The networks are diffusers' ``AutoencoderKL`` / ``VQModel`` (the CompVis encoder and
decoder, ported), sized from a ``first_stage`` config preset. ``FirstStage`` gives both
regularisers one interface: ``encode`` / ``decode`` for the LDM, ``reconstruct`` for
training. Latents are always *unscaled*; the LDM multiplies by ``scale_factor``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal, Mapping

import torch
from diffusers import AutoencoderKL, VQModel
from torch import nn

Kind = Literal["kl", "vq", "none"]
KINDS: tuple[str, ...] = ("kl", "vq", "none")


@dataclass
class Reconstruction:
    """One training pass through E and D.

    Attributes:
        rec: x̃ = D(z), (B, 3, H, W).
        kl: per-sample KL(q(z|x) ‖ N(0, I)) summed over latent dims, (B,); KL only.
        codebook: the quantiser's codebook + β·commitment loss (scalar); VQ only.
        indices: chosen code per latent position, (B·h·w,); VQ only.
    """

    rec: torch.Tensor
    kl: torch.Tensor | None = None
    codebook: torch.Tensor | None = None
    indices: torch.Tensor | None = None


class FirstStage(nn.Module):
    """E and D of one regulariser, with the latent statistics the LDM needs.

    Args:
        kind: ``kl``, ``vq`` or ``none`` (identity, pixel-space LDM-1).
        net: the diffusers ``AutoencoderKL`` / ``VQModel``; None for the identity.
        f: downsampling factor H/h.
        latent_channels: c of z.
        scale_factor: 1/std(z) for KL (LDM's ``scale_by_std``), 1.0 for VQ and identity.
    """

    def __init__(
        self, kind: Kind, net: nn.Module | None, *, f: int, latent_channels: int, scale_factor: float = 1.0
    ) -> None:
        super().__init__()
        if kind not in KINDS:
            raise ValueError(f"first-stage kind {kind!r} is not one of {KINDS}")
        if (net is None) != (kind == "none"):
            raise ValueError("only the identity first stage (kind 'none') has no network")
        self.kind = kind
        self.net = net
        self.f = f
        self.latent_channels = latent_channels
        self.scale_factor = float(scale_factor)

    @property
    def last_layer(self) -> torch.Tensor:
        """Weight of D's output conv: where the adaptive GAN weight is measured (Esser et al.)."""
        if self.net is None:
            raise ValueError("the identity first stage has no decoder")
        return self.net.decoder.conv_out.weight

    def encode(self, x: torch.Tensor, *, sample: bool = False) -> torch.Tensor:
        """(B, 3, H, W) in [-1, 1] -> unscaled z, (B, c, H/f, W/f).

        KL: the posterior mode (``sample=True`` draws from q(z|x)); VQ: the latents
        *before* quantisation ("quantize inside D", paper §3.1); identity: x itself.
        """
        if self.kind == "none":
            return x
        if self.kind == "kl":
            posterior = self.net.encode(x).latent_dist
            return posterior.sample() if sample else posterior.mode()
        return self.net.encode(x).latents

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Unscaled z -> x̃ (B, 3, H, W); VQ quantises first."""
        if self.kind == "none":
            return z
        return self.net.decode(z).sample

    def reconstruct(self, x: torch.Tensor, *, sample_posterior: bool = True) -> Reconstruction:
        """Training pass: x̃ plus the regulariser's terms (KL or codebook loss)."""
        if self.kind == "none":
            raise ValueError("the identity first stage (f=1) is not trained")
        if self.kind == "kl":
            posterior = self.net.encode(x).latent_dist
            z = posterior.sample() if sample_posterior else posterior.mode()
            return Reconstruction(rec=self.net.decode(z).sample, kl=posterior.kl())
        h = self.net.encode(x).latents  # (B, c, h, w), pre-quantisation
        quant, codebook_loss, (_, _, indices) = self.net.quantize(h)
        rec = self.net.decoder(self.net.post_quant_conv(quant))
        return Reconstruction(rec=rec, codebook=codebook_loss, indices=indices.flatten())

    def forward(self, x: torch.Tensor) -> Reconstruction:
        """Same as ``reconstruct``: DDP syncs gradients only for work done in ``forward``."""
        return self.reconstruct(x)


def _level_types(block: str, channel_mult: list[int], resolution: int, attn_resolutions: list[int]) -> list[str]:
    # CompVis puts self-attention at every level whose feature map size is in
    # ``attn_resolutions`` (e.g. 16 for kl_f16 at 256²); diffusers' "Attn*" blocks do the same.
    sizes = [resolution // 2**level for level in range(len(channel_mult))]
    return [f"Attn{block}" if size in attn_resolutions else block for size in sizes]


def build_first_stage(fs: Mapping[str, Any], *, resolution: int, in_channels: int = 3) -> FirstStage:
    """Build the untrained autoencoder a ``first_stage`` preset describes.

    Args:
        fs: the ``first_stage`` config node (``FirstStageConfig``).
        resolution: data resolution, to place attention at the preset's feature sizes.
        in_channels: image channels (3 for RGB).
    """
    kind = fs["regularizer"]
    if kind == "none":
        return FirstStage("none", None, f=1, latent_channels=fs["latent_channels"])
    channel_mult = list(fs["channel_mult"])
    if 2 ** (len(channel_mult) - 1) != fs["f"]:
        raise ValueError(f"channel_mult {channel_mult} gives f={2 ** (len(channel_mult) - 1)}, not {fs['f']}")
    widths = tuple(fs["base_channels"] * m for m in channel_mult)
    attn = list(fs["attn_resolutions"])
    down = _level_types("DownEncoderBlock2D", channel_mult, resolution, attn)
    up = list(reversed(_level_types("UpDecoderBlock2D", channel_mult, resolution, attn)))
    common = dict(
        in_channels=in_channels,
        out_channels=in_channels,
        down_block_types=tuple(down),
        up_block_types=tuple(up),
        block_out_channels=widths,
        layers_per_block=fs["num_res_blocks"],
        latent_channels=fs["latent_channels"],
        norm_num_groups=math.gcd(32, *widths),  # CompVis: 32 groups; toy widths need fewer
        sample_size=resolution,
        scaling_factor=1.0,  # unused: our scale_factor travels with the checkpoint
    )
    if kind == "kl":
        net: nn.Module = AutoencoderKL(**common)
    elif kind == "vq":
        net = VQModel(**common, num_vq_embeddings=fs["codebook_size"])
        net.quantize.beta = float(fs["vq_beta"])  # VQModel hard-codes 0.25
    else:
        raise ValueError(f"first_stage.regularizer={kind!r} is not one of {KINDS}")
    return FirstStage(kind, net, f=fs["f"], latent_channels=fs["latent_channels"])
