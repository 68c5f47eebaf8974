"""Reload a trained LDM from its self-describing checkpoint (weights, EMA, config, first-stage reference)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

from platform.checkpoint import load_checkpoint
from platform.ldm.build import build_model, load_frozen_first_stage
from platform.ldm.ema import Ema
from platform.ldm.pipeline import LdmPipeline


def load_ldm(
    checkpoint: Path | str,
    *,
    device: torch.device | str = "cpu",
    use_ema: bool = True,
    conditions: Any = None,
    num_conditions: int = 256,
) -> tuple[LdmPipeline, DictConfig]:
    """An ``LdmPipeline`` (EMA weights by default) and the run's resolved config.

    The first stage is reloaded from the checkpoint path recorded at training time; the
    latent scale is checked against the one the LDM was trained with.

    Args:
        checkpoint: an LDM checkpoint directory (``.../checkpoints/step-NNNNNNNN``).
        conditions: captions (text) or low-res images (concat) cycled by sample index;
            None loads the first ``num_conditions`` held-out ones named by the config
            (evaluation passes N, so N samples get N distinct conditions where the
            held-out split has that many).
    """
    states, meta, _ = load_checkpoint(checkpoint)
    if meta.get("kind") != "ldm":
        raise ValueError(f"{checkpoint} is not an LDM checkpoint (kind={meta.get('kind')!r})")
    cfg = OmegaConf.create(meta["config"])
    device = torch.device(device)
    reference = dict(meta["first_stage"])
    if reference["checkpoint"]:  # stored relative to the LDM checkpoint (absolute before)
        reference["checkpoint"] = str((Path(checkpoint) / reference["checkpoint"]).resolve())
    first_stage = load_frozen_first_stage(reference["checkpoint"], cfg, device)
    if abs(float(first_stage.scale_factor) - reference["scale_factor"]) > 1e-6 * max(1.0, reference["scale_factor"]):
        raise ValueError(
            f"first stage {reference['checkpoint']} has scale_factor {first_stage.scale_factor}, "
            f"but the LDM was trained with {reference['scale_factor']}"
        )
    model, cond_input = build_model(cfg, first_stage, device)
    model.load_state_dict(states["model"])
    if use_ema:
        ema = Ema(model, cfg.ldm.ema_decay)
        ema.load_state_dict(states["ema"])
        ema.copy_to(model)
    model.eval().requires_grad_(False)
    if conditions is None and cfg.ldm.conditioning in ("text", "concat"):
        from platform.ldm.held_out import held_out_conditions

        conditions = held_out_conditions(cfg, num_conditions)
    pipeline = LdmPipeline(model, first_stage, cond_input, reference["scale_factor"], cfg.ldm.diffusion,
                           num_classes=cfg.data.num_classes, conditions=conditions)
    return pipeline, cfg
