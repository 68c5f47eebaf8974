"""Load a trained first stage from its self-describing checkpoint (or the f = 1 identity).

A first-stage checkpoint (``platform.checkpoint`` format) holds the autoencoder weights
under ``model``, and in its JSON meta the ``first_stage`` preset it was built from, the
data ``resolution``, and the ``scale_factor`` the LDM applies to latents. Nothing else
is needed to rebuild it, and nothing is unpickled.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import torch
from omegaconf import DictConfig, OmegaConf

from platform.checkpoint import META_FILE, latest_checkpoint, load_checkpoint
from platform.first_stage.model import FirstStage, build_first_stage

CHECKPOINT_KIND = "first_stage"


def _first_stage_node(cfg: DictConfig | Mapping[str, Any]) -> dict[str, Any]:
    node = cfg["first_stage"] if "first_stage" in cfg else cfg
    return OmegaConf.to_container(node, resolve=True) if isinstance(node, DictConfig) else dict(node)


def resolve_checkpoint(path: Path | str) -> Path:
    """``path`` itself if it is a checkpoint, else the newest checkpoint under it."""
    path = Path(path)
    if (path / META_FILE).is_file():
        return path
    found = latest_checkpoint(path)
    if found is None:
        raise FileNotFoundError(f"no first-stage checkpoint at or under {path}")
    return found


def load_first_stage(
    checkpoint_dir: Path | str | None,
    cfg: DictConfig | Mapping[str, Any] | None = None,
    *,
    device: torch.device | str = "cpu",
) -> FirstStage:
    """A frozen, eval-mode ``FirstStage`` with its ``scale_factor``, ``f`` and ``latent_channels``.

    Args:
        checkpoint_dir: a checkpoint (``.../step-NNNNNNNN``) or a directory of them (the
            newest is used); None for the identity first stage (f = 1).
        cfg: the run config (or its ``first_stage`` node). Required for the identity;
            with a checkpoint, used only to check that regulariser and f agree.
        device: where to put the model.
    """
    if checkpoint_dir is None:
        if cfg is None:
            raise ValueError("load_first_stage(None, cfg) needs cfg to build the identity first stage")
        fs = _first_stage_node(cfg)
        if fs["regularizer"] != "none":
            raise ValueError(
                f"first stage {fs.get('name')!r} ({fs['regularizer']}, f={fs['f']}) is trained: "
                "pass its checkpoint directory (only the f=1 identity loads from None)"
            )
        model = build_first_stage(fs, resolution=1)
    else:
        path = resolve_checkpoint(checkpoint_dir)
        states, meta, _ = load_checkpoint(path)
        if meta.get("kind") != CHECKPOINT_KIND:
            raise ValueError(f"{path} is a {meta.get('kind')!r} checkpoint, not a first stage")
        fs = meta["first_stage"]
        if cfg is not None:
            want = _first_stage_node(cfg)
            if (want["regularizer"], want["f"]) != (fs["regularizer"], fs["f"]):
                raise ValueError(
                    f"{path} holds a {fs['regularizer']} f={fs['f']} first stage; the config asks for "
                    f"{want['regularizer']} f={want['f']}"
                )
        model = build_first_stage(fs, resolution=meta["resolution"], in_channels=meta["in_channels"])
        model.load_state_dict(states["model"])
        model.scale_factor = float(meta["scale_factor"])
    return model.to(device).eval().requires_grad_(False)
