"""Evaluation workers on a real local Ray cluster: K = 2 gives the same metrics as K = 1."""

from __future__ import annotations

import contextlib

import pytest
import torch
from PIL import Image

from evaluation.sources import FolderSource, ShardSource, TensorSource
from evaluation.stats import FeatureStats
from evaluation.workers import _Pool, compute_metrics, evaluate
from tests.evaluation.conftest import digit_images


@contextlib.contextmanager
def _one_thread():
    """This process computes as one Ray actor of ``cpus_per_worker=1`` does: float32
    convolutions sum in another order on another number of threads (~1e-6 apart)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


@pytest.mark.slow  # two pools of K = 2 Ray actors loading Inception; K = 1 runs in this process
def test_two_workers_match_one(ray_cluster, detector, tmp_path):
    fake_dir = tmp_path / "fake"
    fake_dir.mkdir()
    for i, image in enumerate(digit_images((0, 1, 2), 7)):
        Image.fromarray(image.permute(1, 2, 0).numpy()).save(fake_dir / f"{i:03d}.png")
    fake, real = FolderSource(fake_dir), TensorSource(digit_images((3, 4, 5), 7), name="digits 3-5")

    # The merged statistics themselves: K = 2 actors give K = 1's sums, Gram and rows. K = 1 is
    # the in-process worker (same extraction code, the session's detector: no actor to start).
    def extract(k: int, source) -> FeatureStats:
        pool = _Pool(detector.asset, num_workers=k, use_ray=k > 1, device="cpu", batch_size=4,
                     gpus_per_worker=0, cpus_per_worker=1, detector=detector if k == 1 else None)
        try:
            with _one_thread():
                return pool.run(source, 7, keep_features=True, keep_logits=False)[0]
        finally:
            pool.close()

    stats = {k: extract(k, fake) for k in (1, 2)}
    real_stats = extract(1, real)
    one, two = stats[1], stats[2]
    assert one.count == two.count == 7 and torch.equal(one.indices, two.indices)
    for name in ("sum", "gram", "features"):
        torch.testing.assert_close(getattr(two, name).double(), getattr(one, name).double(), rtol=1e-12, atol=1e-12)

    # FID's tolerance is its own float64 noise: the same rows summed in reverse order.
    reverse = FeatureStats(2048)
    reverse.update(one.features.flip(0), range(6, -1, -1))
    fid = {k: compute_metrics(s, real_stats, ["fid"], has_classifier=False)["fid"].value
           for k, s in (("one", one), ("two", two), ("reverse", reverse))}
    noise = abs(fid["reverse"] - fid["one"])
    assert abs(fid["two"] - fid["one"]) <= max(4 * noise, 1e-12 * fid["one"]), (fid, noise)

    # End to end through evaluate(): every metric the same for K = 1 and K = 2.
    kwargs = dict(metrics="fid,kid,pr", use_cache=False, batch_size=4, kid_subset_size=3, kid_subsets=5)
    with _one_thread():
        reports = {1: evaluate(fake, real, num_workers=1, detector=detector, **kwargs)}
    reports[2] = evaluate(fake, real, num_workers=2, use_ray=True, **kwargs)
    assert reports[2].info["num_workers"] == 2
    for name in ("kid", "precision", "recall"):
        assert reports[1].metrics[name].n == reports[2].metrics[name].n == 7
        assert reports[2].metrics[name].value == pytest.approx(reports[1].metrics[name].value, rel=1e-12, abs=1e-12)
    assert abs(reports[2].metrics["fid"].value - reports[1].metrics["fid"].value) <= max(4 * noise, 1e-12 * fid["one"])


def test_shard_source_reads_inside_a_ray_worker(ray_cluster, tiny_shards):
    # Workers import platform.data from the job's working_dir (platform/cluster.py).
    source = ShardSource(tiny_shards[1])

    @ray_cluster.remote(num_cpus=0)
    def read(src, slices):
        return [src.images(range(lo, hi)) for lo, hi in slices]

    # One task (one worker process to start), two slices of the shards.
    parts = ray_cluster.get(read.remote(source, [(0, 3), (3, 8)]))
    assert torch.equal(torch.cat(parts), source.images(range(8)))


def _crashed_attempt_then_retry() -> tuple[str, str]:
    """Inside one Ray task: a pool's group left behind (as by a killed attempt), then the next
    pool's name; returns the two groups' states."""
    import ray
    from ray.util.placement_group import placement_group, placement_group_table

    from evaluation.workers import _remove_orphaned_group

    left = placement_group([{"CPU": 1}, {"CPU": 1}], name=_remove_orphaned_group())
    ray.get(left.ready())  # holds both CPUs of the test cluster: a retry would wait forever
    retry = placement_group([{"CPU": 1}], name=_remove_orphaned_group())
    ray.get(retry.ready(), timeout=60)
    states = (placement_group_table(left)["state"], placement_group_table(retry)["state"])
    ray.util.remove_placement_group(retry)
    return states


def test_a_retried_evaluation_gets_back_the_group_its_dead_attempt_held(ray_cluster):
    task = ray_cluster.remote(num_cpus=0)(_crashed_attempt_then_retry)
    assert ray_cluster.get(task.remote(), timeout=120) == ("REMOVED", "CREATED")
