"""Conditions for sampling taken from the held-out split: captions (text) or low-res images (concat)."""

from __future__ import annotations

import logging
from typing import Any

import torch
from omegaconf import DictConfig

from platform.config.schema import Conditioning
from platform.ldm.conditioning import low_resolution

log = logging.getLogger(__name__)


def held_out_conditions(cfg: DictConfig, count: int) -> Any:
    """The first ``count`` captions (text) or low-res images (concat) of ``data.eval_shards``.

    Returns a list of str, or a float tensor (count, 3, H/s, W/s) in [-1, 1].
    """
    from platform.data.loader import make_loader

    mode = Conditioning(cfg.ldm.conditioning)
    captions: list[str] = []
    images: list[torch.Tensor] = []
    loader = make_loader(cfg.data.eval_shards, batch_size=min(count, 256), shuffle=False,
                         resolution=cfg.data.resolution, drop_last=False)
    for batch in loader:
        captions.extend(batch["caption"])
        images.append(batch["image"])
        if len(captions) >= count:
            break
    if not captions:
        raise ValueError(f"no held-out samples in {cfg.data.eval_shards} to condition on")
    if len(captions) < count:
        log.warning("%s holds %d held-out conditions for %d samples: samples cycle through them",
                    cfg.data.eval_shards, len(captions), count)
    if mode is Conditioning.text:
        return captions[:count]
    return low_resolution(torch.cat(images)[:count].float(), cfg.ldm.cond.sr_factor)
