"""The reference set is what the model trains on: resized like training batches, a seeded random draw."""

from __future__ import annotations

import torch

from evaluation.sources import ShardSource
from platform.data.loader import make_loader


def _training_pixels(shards, resolution: int, count: int) -> torch.Tensor:
    batch = next(iter(make_loader(shards, batch_size=count, shuffle=False, resolution=resolution)))
    return ((batch["image"] + 1.0) * 127.5).round().to(torch.uint8)  # as generated samples are quantised


def test_reference_at_data_resolution_is_the_training_loaders_image(tiny_shards):
    train = tiny_shards[0]  # stored at 32 px
    for resolution in (16, 32):
        source = ShardSource(train, resolution=resolution, subset_seed=None)
        images = source.images(range(8))
        assert images.shape == (8, 3, resolution, resolution)
        assert torch.equal(images, _training_pixels(train, resolution, 8)), resolution
    keys = {ShardSource(train, resolution=r).cache_key() for r in (16, 32)}
    assert len(keys) == 2  # reference statistics are cached per resolution


def test_reference_subset_is_a_seeded_random_draw(tiny_shards):
    train = tiny_shards[0]  # built in class order: the first images are not a random sample
    manifest_order = ShardSource(train, subset_seed=None)
    first, again, other = ShardSource(train), ShardSource(train, subset_seed=0), ShardSource(train, subset_seed=1)
    assert sorted(first.order.tolist()) == list(range(len(first)))  # a permutation: no repeats
    assert torch.equal(first.images(range(12)), again.images(range(12)))
    assert not torch.equal(first.images(range(12)), manifest_order.images(range(12)))
    assert not torch.equal(first.images(range(12)), other.images(range(12)))
    # the i-th image is the sample at position order[i], whatever the request's order or split
    picked = [int(p) for p in first.order[[5, 0, 3]]]
    assert torch.equal(first.images([5, 0, 3]), torch.stack([manifest_order.images([p])[0] for p in picked]))
    assert len({first.cache_key(), other.cache_key(), manifest_order.cache_key()}) == 3
