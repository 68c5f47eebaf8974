"""Latent cache: encode once, keyed by first stage + dataset, atomic, same latents as on the fly."""

from __future__ import annotations

import json

import pytest
import torch

from platform.data.loader import make_loader
from platform.data.manifest import load_manifest
from platform.first_stage.load import load_first_stage
from platform.ldm.latent_cache import build_latent_cache, cache_key, iterate_latents, module_fingerprint
from platform.ldm.train import train_ldm
from platform.reporting import LocalReporter
from tests.platform.ldm.conftest import smoke_config


def test_cache_matches_on_the_fly_encoding_and_is_reused(tiny_shards, first_stage_f8, tmp_path):
    train, _ = tiny_shards
    fs = load_first_stage(first_stage_f8)
    cache = build_latent_cache(fs, train, tmp_path, batch_size=64, resolution=32, sr_factor=4)
    assert cache.name == cache_key(module_fingerprint(fs), load_manifest(train).dataset_id, 32, 4)
    assert not list(tmp_path.glob(".tmp-*"))  # written under a temporary name, then renamed
    manifest = load_manifest(cache)
    assert manifest.mode == "latent" and manifest.num_samples == 256

    batch = next(iterate_latents(cache, batch_size=8, shuffle=False))
    images = next(iter(make_loader(train, batch_size=8, shuffle=False)))
    assert batch["key"] == images["key"] and torch.equal(batch["label"], images["label"])
    torch.testing.assert_close(batch["latent"], fs.encode(images["image"]), rtol=1e-4, atol=1e-4)
    assert batch["latent"].shape == (8, 4, 4, 4)  # f = 8: 32 px -> 4x4x4 latents
    assert batch["lowres"].shape == (8, 3, 8, 8)  # 32 / sr_factor

    mtime = (cache / "manifest.json").stat().st_mtime_ns
    assert build_latent_cache(fs, train, tmp_path, batch_size=64, resolution=32, sr_factor=4) == cache
    assert (cache / "manifest.json").stat().st_mtime_ns == mtime  # reused, not rebuilt
    assert build_latent_cache(fs, train, tmp_path, batch_size=64, resolution=32).name != cache.name  # other key


def test_cache_encodes_at_data_resolution_like_the_training_loader(tiny_shards, first_stage_f8, tmp_path):
    # Shards stored at 32 px, trained at data.resolution = 16: latents must be 2x2 (f = 8),
    # the encoding of the resized training batch, and cached apart from the 32 px latents.
    train, _ = tiny_shards
    fs = load_first_stage(first_stage_f8)
    small = build_latent_cache(fs, train, tmp_path, batch_size=64, resolution=16)
    assert small != build_latent_cache(fs, train, tmp_path, batch_size=64, resolution=32)
    assert load_manifest(small).image_size == 16
    batch = next(iterate_latents(small, batch_size=8, shuffle=False))
    images = next(iter(make_loader(train, batch_size=8, shuffle=False, resolution=16)))
    assert batch["latent"].shape == (8, 4, 2, 2)
    torch.testing.assert_close(batch["latent"], fs.encode(images["image"]), rtol=1e-4, atol=1e-4)


def test_cached_epochs_are_rank_disjoint_and_resumable(tiny_shards, first_stage_f8, tmp_path):
    cache = build_latent_cache(load_first_stage(first_stage_f8), tiny_shards[0], tmp_path, batch_size=64, resolution=32)
    keys = [[k for b in iterate_latents(cache, batch_size=8, rank=r, world_size=2, epoch=1) for k in b["key"]]
            for r in (0, 1)]
    assert len(keys[0]) == len(keys[1]) == 128 and not set(keys[0]) & set(keys[1])
    full = list(iterate_latents(cache, batch_size=8, epoch=3))
    resumed = list(iterate_latents(cache, batch_size=8, epoch=3, skip_batches=5))
    assert [b["key"] for b in resumed] == [b["key"] for b in full[5:]]
    other_epoch = next(iterate_latents(cache, batch_size=8, epoch=4))
    assert other_epoch["key"] != full[0]["key"]


@pytest.mark.slow
def test_training_from_the_latent_cache(tiny_shards, first_stage_f8, tmp_path):
    cfg = smoke_config(tiny_shards, tmp_path, "ldm.latent_cache=true", "ldm.conditioning=concat",
                       "ldm.train.steps=4", "ldm.train.log_every=2", "ldm.train.batch_size=8",
                       "ldm.unet.channels=16", "ldm.unet.context_dim=32")
    result = train_ldm(cfg, tmp_path / "run", LocalReporter(tmp_path / "run", quiet=True),
                       first_stage_checkpoint=first_stage_f8)
    assert result.step == 4
    caches = [p for p in (tmp_path / "latent_cache").iterdir() if not p.name.startswith(".")]
    assert len(caches) == 1 and json.loads((caches[0] / "manifest.json").read_text())["extra"]["sr_factor"] == 4
