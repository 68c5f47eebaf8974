"""Conditioning y -> τθ(y) for the LDM (paper §3.3), split into a frozen and a trained half.

``CondInput.prepare(batch)`` is the frozen half, run outside the trained model (and so
outside its checkpoint and EMA): class ids, frozen text features or byte tokens, or
the low-resolution image resized to the latent grid. ``Conditioner`` is the trained
half, inside ``LdmModel``: it maps that input to the tensor the UNet consumes, and
replaces rows marked ``drop`` by the null condition used for classifier-free
guidance (Ho & Salimans 2022): the extra null class, the empty caption, a zero image.

Modes (``ldm.conditioning``):
- ``none``: no y.
- ``class``: learned embedding, one context token of width ``unet.context_dim`` (B, 1, D),
  with ``num_classes`` as the null class.
- ``text``: frozen all-MiniLM-L6-v2 token features (B, T, 384), or a BERT over ByT5 bytes
  trained jointly (B, T, context_dim).
- ``concat``: the image at ``resolution / sr_factor`` resized to the latent side and
  concatenated to z_t (B, 3, h, w) — LDM super-resolution (paper §4.4).
"""

from __future__ import annotations

from typing import Any, Mapping

import torch
import torch.nn.functional as F
from torch import nn

from platform.config.schema import Conditioning, LdmConfig, TextEncoder
from platform.ldm.text_encoders import FrozenMiniLM, build_bert, byt5_token_ids


def _mode(cfg: LdmConfig) -> Conditioning:
    try:
        return Conditioning(cfg.conditioning)
    except ValueError:
        allowed = ", ".join(c.value for c in Conditioning)
        raise ValueError(f"ldm.conditioning={cfg.conditioning!r} is not one of: {allowed}") from None


def low_resolution(image: torch.Tensor, sr_factor: int) -> torch.Tensor:
    """The super-resolution input: (B, 3, H, W) in [-1, 1] -> (B, 3, H/s, W/s), area-averaged."""
    return F.avg_pool2d(image, sr_factor) if sr_factor > 1 else image


def to_latent_grid(lowres: torch.Tensor, latent_size: int) -> torch.Tensor:
    """Resize the low-resolution image to the latent side h for concatenation: (B, 3, h, h)."""
    if lowres.shape[-1] == latent_size:
        return lowres
    return F.interpolate(lowres, size=(latent_size, latent_size), mode="bilinear", antialias=True, align_corners=False)


class CondInput:
    """The frozen half of τθ: a batch dict -> the tensor ``Conditioner`` consumes (or None)."""

    def __init__(self, cfg: LdmConfig, *, latent_size: int, device: torch.device | str = "cpu") -> None:
        self.mode = _mode(cfg)
        self.text_encoder = TextEncoder(cfg.cond.text_encoder)
        self.max_tokens = cfg.cond.max_text_tokens
        self.sr_factor = cfg.cond.sr_factor
        self.latent_size = latent_size
        self.device = torch.device(device)
        self.frozen: FrozenMiniLM | None = None
        if self.mode is Conditioning.text and self.text_encoder is TextEncoder.frozen_minilm:
            self.frozen = FrozenMiniLM(self.max_tokens).to(self.device)

    @property
    def text_width(self) -> int | None:
        return self.frozen.width if self.frozen is not None else None

    def prepare(self, batch: Mapping[str, Any]) -> torch.Tensor | None:
        """Class ids (B,), text features (B, T, 384) or byte ids (B, T), or the image (B, 3, h, h)."""
        if self.mode is Conditioning.none:
            return None
        if self.mode is Conditioning.class_label:
            return torch.as_tensor(batch["label"], dtype=torch.long, device=self.device)
        if self.mode is Conditioning.text:
            if self.frozen is not None:
                return self.frozen(batch["caption"])
            return byt5_token_ids(batch["caption"], self.max_tokens).to(self.device)
        lowres = batch["lowres"] if "lowres" in batch else low_resolution(batch["image"], self.sr_factor)
        return to_latent_grid(lowres.to(self.device, torch.float32), self.latent_size)

    def null_caption_features(self) -> torch.Tensor | None:
        """Frozen features of the empty caption (T, 384): the null text for guidance."""
        if self.frozen is None:
            return None
        return self.frozen([""])[0]


class Conditioner(nn.Module):
    """The trained half of τθ: prepared input (+ drop mask) -> UNet conditioning tensor."""

    def __init__(self, cfg: LdmConfig, *, num_classes: int, text_width: int | None = None) -> None:
        super().__init__()
        self.mode = _mode(cfg)
        self.num_classes = num_classes
        self.context_dim: int | None = None  # cross-attention width, None without cross-attention
        self.extra_channels = 0  # channels concatenated to z_t
        if self.mode is Conditioning.class_label:
            self.embedding = nn.Embedding(num_classes + 1, cfg.unet.context_dim)  # +1: null class
            self.context_dim = cfg.unet.context_dim
        elif self.mode is Conditioning.text:
            if TextEncoder(cfg.cond.text_encoder) is TextEncoder.frozen_minilm:
                if text_width is None:
                    raise ValueError("frozen text conditioning needs the encoder's width (text_width)")
                # Features of "" from the frozen encoder; filled by ``set_null_text``, saved with the model.
                self.register_buffer("null_text", torch.zeros(cfg.cond.max_text_tokens, text_width))
                self.context_dim = text_width
            else:
                self.bert = build_bert(cfg.unet.context_dim, cfg.cond.text_layers, cfg.cond.max_text_tokens)
                self.register_buffer("null_ids", byt5_token_ids([""], cfg.cond.max_text_tokens)[0])
                self.context_dim = cfg.unet.context_dim
        elif self.mode is Conditioning.concat:
            self.extra_channels = 3

    def set_null_text(self, features: torch.Tensor) -> None:
        self.null_text.copy_(features)

    def forward(self, inp: torch.Tensor | None, drop: torch.Tensor | None = None) -> torch.Tensor | None:
        """``drop``: (B,) bool, True where y is replaced by the null condition."""
        if self.mode is Conditioning.none:
            return None
        if drop is not None:
            inp = self._drop(inp, drop.to(inp.device))
        if self.mode is Conditioning.class_label:
            return self.embedding(inp)[:, None, :]  # (B, 1, D): one context token
        if self.mode is Conditioning.text:
            if hasattr(self, "bert"):
                mask = (inp != self.bert.config.pad_token_id).long()
                mask[:, 0] = 1  # never an all-masked row
                return self.bert(input_ids=inp, attention_mask=mask).last_hidden_state  # (B, T, D)
            return inp  # (B, T, 384) frozen features
        return inp  # (B, 3, h, w) concatenated by the model

    def _drop(self, inp: torch.Tensor, drop: torch.Tensor) -> torch.Tensor:
        if self.mode is Conditioning.class_label:
            return torch.where(drop, torch.full_like(inp, self.num_classes), inp)
        if self.mode is Conditioning.text:
            null = self.null_ids if hasattr(self, "bert") else self.null_text.to(inp.dtype)
            keep = ~drop.view(-1, *([1] * (inp.dim() - 1)))
            return torch.where(keep, inp, null.expand_as(inp))
        return inp * (~drop).view(-1, 1, 1, 1).to(inp.dtype)  # concat: a zero image

    def null_input(self, like: torch.Tensor | None, batch_size: int) -> torch.Tensor | None:
        """A prepared input whose every row is dropped (unconditional branch of guidance)."""
        if like is None:
            return None
        return self._drop(like, torch.ones(batch_size, dtype=torch.bool, device=like.device))
