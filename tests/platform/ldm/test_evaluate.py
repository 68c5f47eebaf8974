"""The LDM as an evaluation image source, and FID/KID/PR of a smoke checkpoint in one call."""

from __future__ import annotations

import pickle

import pytest
import torch

from platform.ldm.evaluate import LdmSampleSource, SamplerSettings, evaluate_ldm
from platform.ldm.train import train_ldm
from platform.reporting import LocalReporter
from tests.platform.ldm.conftest import smoke_config

TINY = ["ldm.unet.channels=16", "ldm.unet.context_dim=32", "ldm.train.batch_size=8"]


@pytest.fixture(scope="module")
def smoke_checkpoint(tiny_shards, first_stage_f8, tmp_path_factory):
    work = tmp_path_factory.mktemp("ldm_eval")
    cfg = smoke_config(tiny_shards, work, "ldm.conditioning=class", "ldm.train.steps=2", "ldm.train.ckpt_every=2",
                       "eval.sampling_steps=[3,5]", "eval.num_samples=16", "eval.batch_size=8", *TINY)
    result = train_ldm(cfg, work / "run", LocalReporter(work / "run", quiet=True), first_stage_checkpoint=first_stage_f8)
    return result.checkpoint, cfg, work


@pytest.mark.slow
def test_sample_source_is_split_invariant_and_picklable(smoke_checkpoint):
    checkpoint, _, _ = smoke_checkpoint
    source = LdmSampleSource(checkpoint, SamplerSettings(steps=4, eta=1.0, guidance_scale=1.5, seed=3), 8,
                             batch_size=4)
    batch4 = source.images([0, 1, 2, 3])
    clone = pickle.loads(pickle.dumps(source))  # as an evaluation actor receives it (model not pickled)
    singles = torch.cat([clone.images([i]) for i in range(4)])
    assert batch4.dtype == torch.uint8 and batch4.shape == (4, 3, 32, 32)
    assert (batch4.int() - singles.int()).abs().max() <= 1  # float rounding at most flips one uint8 level
    assert (batch4 == singles).float().mean() > 0.99
    assert not torch.equal(batch4[0], batch4[1])
    other_seed = LdmSampleSource(checkpoint, SamplerSettings(steps=4, eta=1.0, guidance_scale=1.5, seed=4), 8)
    assert not torch.equal(other_seed.images([0]), batch4[:1])
    assert "seed3" in source.cache_key() and len(source) == 8


@pytest.mark.slow
def test_evaluate_smoke_checkpoint_reports_metrics_n_settings_and_speed(smoke_checkpoint, tmp_path):
    checkpoint, cfg, _ = smoke_checkpoint
    cfg.eval.metrics = ["fid", "kid", "pr"]
    cfg.eval.kid_subset_size = 8
    results = evaluate_ldm(checkpoint, cfg, cache_dir=tmp_path / "refs", num_workers=1)
    assert [r.settings.steps for r in results] == [3, 5]
    for r in results:
        assert r.num_samples == 16 and r.images_per_s > 0
        assert r.settings.sampler == "ddim" and r.settings.eta == 0.0
        for name in ("fid", "kid", "precision", "recall"):
            assert name in r.metrics and r.metrics["n"] == 16, r.metrics
        assert r.metrics["fid"] > 0
