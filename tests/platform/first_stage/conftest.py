"""Toy first-stage configs over the ``tiny_shards`` digits (32×32, 256 train / 64 test)."""

from pathlib import Path

import pytest

from platform.config.compose import compose_config


@pytest.fixture
def toy_overrides(tiny_shards, tmp_path) -> list[str]:
    """Overrides for a seconds-long run on 2 CPU cores (width 8, batch 4, GAN from step 2)."""
    train, test = tiny_shards
    return [
        "scale=smoke", "first_stage=kl_f4", "first_stage.base_channels=8", "first_stage.disc_channels=8",
        "first_stage.disc_start=2", "first_stage.train.batch_size=4", "first_stage.train.steps=4",
        "first_stage.train.ckpt_every=2", "first_stage.train.log_every=1", "data.loader_workers=0",
        f"data.train_shards={train}", f"data.eval_shards={test}", "eval.num_samples=8", "eval.batch_size=8",
        f"paths.work_dir={tmp_path / 'work'}",
    ]


def toy_config(overrides: list[str], *extra: str):
    return compose_config([*overrides, *extra])


@pytest.fixture
def run_dir(tmp_path) -> Path:
    return tmp_path / "run"
