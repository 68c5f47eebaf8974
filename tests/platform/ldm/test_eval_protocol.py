"""What conditioned evaluation compares: N distinct conditions, and super-resolution's own ground truth."""

from __future__ import annotations

import torch

from platform.ldm.conditioning import low_resolution
from platform.ldm.evaluate import LdmSampleSource, SamplerSettings, reference_images
from platform.ldm.held_out import held_out_conditions
from tests.platform.ldm.conftest import smoke_config


def test_super_resolution_is_scored_against_the_high_resolution_inputs(tiny_shards, tmp_path):
    cfg = smoke_config(tiny_shards, tmp_path, "ldm.conditioning=concat", "eval.num_samples=40")
    real, num_reference = reference_images(cfg)
    assert real.shards_dir == str(tiny_shards[1]) and num_reference == 40  # held-out split, not training images
    truth = real.images(range(40)).float() / 127.5 - 1.0  # (40, 3, 32, 32)
    inputs = held_out_conditions(cfg, 40)  # sample i upsamples inputs[i]
    torch.testing.assert_close(low_resolution(truth, cfg.ldm.cond.sr_factor), inputs, atol=1 / 127.5, rtol=0)


def test_class_conditional_reference_is_a_random_draw_of_the_reference_split(tiny_shards, tmp_path):
    cfg = smoke_config(tiny_shards, tmp_path, "ldm.conditioning=class", "data.resolution=16")
    real, num_reference = reference_images(cfg)
    assert real.shards_dir == str(tiny_shards[0]) and num_reference is None
    assert real.subset_seed == cfg.eval.reference_seed and real.image_size == 16


def test_samples_get_as_many_distinct_conditions_as_there_are_samples(tiny_shards, tmp_path, monkeypatch):
    import platform.ldm.load as load

    asked = []
    monkeypatch.setattr(load, "load_ldm", lambda checkpoint, **kw: (asked.append(kw["num_conditions"]), (None, None))[1])
    source = LdmSampleSource(tmp_path / "ckpt", SamplerSettings(), 300)
    source.prepare()
    assert asked == [300]  # not a fixed 256 cycled over N
    cfg = smoke_config(tiny_shards, tmp_path, "ldm.conditioning=text")
    captions = held_out_conditions(cfg, 50)
    assert len(captions) == 50
