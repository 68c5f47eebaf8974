"""make_loader: exactly-once splits over ranks x workers, seeded order, resume, resolution."""

from __future__ import annotations

from collections import Counter

import pytest
import torch

from platform.data import plan
from platform.data.loader import make_loader
from platform.data.manifest import load_manifest

pytestmark = pytest.mark.filterwarnings("ignore:The image decoding and encoding capabilities:DeprecationWarning")


def _keys(loader) -> list[str]:
    return [key for batch in loader for key in batch["key"]]


def test_world_2_workers_2_sees_every_sample_exactly_once(tiny_shards):
    train_dir, _ = tiny_shards
    manifest = load_manifest(train_dir)
    seen: Counter[str] = Counter()
    per_rank = []
    for rank in range(2):
        loader = make_loader(train_dir, batch_size=24, rank=rank, world_size=2, num_workers=2, seed=3)
        keys = _keys(loader)
        per_rank.append(len(keys))
        seen.update(keys)
        assert len(keys) == 128 and sum(1 for _ in loader) == len(loader)  # 128 / 24 -> 6 batches
    assert len(seen) == manifest.num_samples == 256 and set(seen.values()) == {1}
    assert per_rank == [128, 128]


def test_uneven_split_still_exactly_once(tiny_shards):
    train_dir, _ = tiny_shards
    seen: Counter[str] = Counter()
    for rank in range(3):  # 256 = 85 + 85 + 86, odd batch size: partial batches
        seen.update(_keys(make_loader(train_dir, batch_size=7, rank=rank, world_size=3, num_workers=2)))
    assert len(seen) == 256 and set(seen.values()) == {1}
    # More workers than batches: the idle worker yields nothing and nothing is lost.
    _, test_dir = tiny_shards
    loaders = [make_loader(test_dir, batch_size=64, rank=r, world_size=2, num_workers=2) for r in range(2)]
    batches = [b for loader in loaders for b in loader]
    assert [len(b["key"]) for b in batches] == [32, 32] and len({k for b in batches for k in b["key"]}) == 64


def test_same_seed_same_order_other_seed_other_order(tiny_shards):
    train_dir, _ = tiny_shards
    first = _keys(make_loader(train_dir, batch_size=16, seed=7, shuffle_buffer=64))
    again = _keys(make_loader(train_dir, batch_size=16, seed=7, shuffle_buffer=64))
    other = _keys(make_loader(train_dir, batch_size=16, seed=8, shuffle_buffer=64))
    next_epoch = _keys(make_loader(train_dir, batch_size=16, seed=7, epoch=1, shuffle_buffer=64))
    assert first == again
    assert first != other and sorted(first) == sorted(other)
    assert first != next_epoch and sorted(first) == sorted(next_epoch)
    unshuffled = _keys(make_loader(train_dir, batch_size=16, shuffle=False))
    assert unshuffled != first and sorted(unshuffled) == sorted(first)


def test_batches_are_images_in_range_with_labels_and_captions(tiny_shards):
    train_dir, _ = tiny_shards
    batch = next(iter(make_loader(train_dir, batch_size=8, resolution=16)))
    assert batch["image"].shape == (8, 3, 16, 16) and batch["image"].dtype == torch.float32
    assert batch["image"].min() >= -1 and batch["image"].max() <= 1
    assert batch["label"].dtype == torch.long and batch["label"].shape == (8,)
    assert all(c == f"a photo of the digit {int(l)}" for c, l in zip(batch["caption"], batch["label"]))


@pytest.mark.parametrize("num_workers", [0, 2])
def test_skip_batches_resumes_the_same_order(tiny_shards, num_workers):
    train_dir, _ = tiny_shards
    kwargs = dict(batch_size=10, num_workers=num_workers, seed=5, epoch=2, shuffle_buffer=50, rank=1, world_size=2)
    full = [b["key"] for b in make_loader(train_dir, **kwargs)]
    resumed = make_loader(train_dir, skip_batches=5, **kwargs)
    assert [b["key"] for b in resumed] == full[5:] and len(resumed) == len(full) - 5


def test_resampled_is_endless_and_resumable(tiny_shards):
    train_dir, _ = tiny_shards
    kwargs = dict(batch_size=32, num_workers=2, seed=1, resampled=True, shuffle_buffer=40)
    stream = iter(make_loader(train_dir, **kwargs))
    head = [next(stream)["key"] for _ in range(20)]  # 640 samples from 256: past two epochs
    assert all(len(keys) == 32 for keys in head)
    first_epoch = Counter(k for keys in head[:8] for k in keys)  # 256 samples = one epoch
    assert len(first_epoch) == 256
    resumed = iter(make_loader(train_dir, skip_batches=13, **kwargs))
    assert [next(resumed)["key"] for _ in range(7)] == head[13:]
    with pytest.raises(TypeError, match="endless"):
        len(make_loader(train_dir, **kwargs))


def test_plan_skip_accounting_matches_dataloader_round_robin():
    # Workers with 3, 3 and 1 batches: the DataLoader yields w0 w1 w2 w0 w1 w0 w1.
    assert list(plan.schedule([3, 3, 1])) == [0, 1, 2, 0, 1, 0, 1]
    assert plan.resume_point([3, 3, 1], 4) == ([2, 1, 1], 1)
    assert plan.resume_point([3, 3, 1], 6) == ([3, 2, 1], 1)
    assert plan.resume_point([None, None], 5) == ([3, 2], 1)
    assert plan.worker_slice(85, num_workers=3, worker=2, batch_size=7, whole_batches=True) == (56, 85)
