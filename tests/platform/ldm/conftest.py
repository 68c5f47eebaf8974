"""LDM test fixtures: smoke configs over tiny shards and an untrained first-stage checkpoint."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from platform.checkpoint import save_checkpoint
from platform.config.compose import compose_config


def make_first_stage_checkpoint(root: Path, fs_name: str = "kl_f8", scale_factor: float = 0.75) -> Path:
    """A first-stage checkpoint in ``platform.first_stage`` format with random weights (no training).

    The LDM stage only needs a frozen E/D and its scale factor; training one is the
    first-stage engineer's test. A distinctive ``scale_factor`` shows it is read, not assumed.
    """
    from platform.first_stage.load import CHECKPOINT_KIND
    from platform.first_stage.model import build_first_stage

    cfg = compose_config(["scale=smoke", f"first_stage={fs_name}"])
    fs = OmegaConf.to_container(cfg.first_stage, resolve=True)
    torch.manual_seed(0)
    model = build_first_stage(fs, resolution=cfg.data.resolution, in_channels=cfg.data.channels)
    meta = {"kind": CHECKPOINT_KIND, "first_stage": fs, "resolution": cfg.data.resolution,
            "in_channels": cfg.data.channels, "scale_factor": scale_factor}
    return save_checkpoint(root, 0, {"model": model.state_dict()}, meta)


@pytest.fixture(scope="session")
def first_stage_f8(tmp_path_factory) -> Path:
    return make_first_stage_checkpoint(tmp_path_factory.mktemp("fs_kl_f8"))


def smoke_config(shards: tuple[Path, Path], work_dir: Path, *overrides: str):
    """``scale=smoke`` over the tiny shards, with runs under ``work_dir``."""
    train, test = shards
    return compose_config(["scale=smoke", "first_stage=kl_f8", f"data.train_shards={train}",
                           f"data.eval_shards={test}", f"paths.work_dir={work_dir}", "data.loader_workers=0",
                           *overrides])
