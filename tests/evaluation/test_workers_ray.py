"""Evaluation workers on a real local Ray cluster: K = 2 gives the same metrics as K = 1."""

from __future__ import annotations

import pytest
import torch
from PIL import Image

from evaluation.sources import FolderSource, ShardSource, TensorSource
from evaluation.workers import evaluate
from tests.evaluation.conftest import digit_images


@pytest.mark.slow  # two rounds of Ray actors loading Inception, ~20 images each
def test_two_workers_match_one(ray_cluster, eval_cache, inception_asset, tmp_path):
    fake_dir = tmp_path / "fake"
    fake_dir.mkdir()
    for i, image in enumerate(digit_images((0, 1, 2), 7)):
        Image.fromarray(image.permute(1, 2, 0).numpy()).save(fake_dir / f"{i:03d}.png")
    fake, real = FolderSource(fake_dir), TensorSource(digit_images((3, 4, 5), 7), name="digits 3-5")
    kwargs = dict(metrics="fid,kid,pr", use_ray=True, use_cache=False, batch_size=4, kid_subset_size=7, kid_subsets=5)
    one = evaluate(fake, real, num_workers=1, **kwargs)
    two = evaluate(fake, real, num_workers=2, **kwargs)
    assert two.info["num_workers"] == 2
    for name in ("fid", "kid", "precision", "recall"):
        assert one.metrics[name].n == two.metrics[name].n == 7
        assert two.metrics[name].value == pytest.approx(one.metrics[name].value, rel=1e-9, abs=1e-12), name


def test_shard_source_reads_inside_a_ray_worker(ray_cluster, tiny_shards):
    # Workers import platform.data from the job's working_dir (platform/cluster.py).
    source = ShardSource(tiny_shards[1])

    @ray_cluster.remote(num_cpus=0)
    def read(src, lo, hi):
        return src.images(range(lo, hi))

    parts = ray_cluster.get([read.remote(source, 0, 3), read.remote(source, 3, 8)])
    assert torch.equal(torch.cat(parts), source.images(range(8)))
