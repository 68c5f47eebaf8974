"""The driver in-process: shard sources, N with every metric, IS unavailable, reference cache."""

from __future__ import annotations

import logging

import pytest
import torch

from evaluation.sources import GeneratedSource, ShardSource, TensorSource
from evaluation.workers import evaluate, even_slices


@pytest.mark.slow  # ~20 images through Inception: ~15 s idle, a minute on a loaded 2-core box
def test_shards_in_process_with_reference_cache(tiny_shards, detector, tmp_path, caplog):
    train, test = ShardSource(tiny_shards[0]), ShardSource(tiny_shards[1])
    kwargs = dict(metrics="fid,kid,pr,is", num_workers=0, batch_size=8, cache_dir=tmp_path, kid_subset_size=5, kid_subsets=5, detector=detector)
    caplog.set_level(logging.INFO, logger="evaluation.reference")
    first = evaluate(test, train, num_samples=5, **kwargs)
    assert first.info["reference_cache"] == "miss"
    for name in ("fid", "kid", "precision", "recall"):
        assert first.metrics[name].value is not None and first.metrics[name].n == 5 and first.metrics[name].n_ref == 5
    assert first.metrics["is"].value is None and "no 1008-way fc layer" in first.metrics["is"].unavailable
    assert first.metrics["kid"].details["subset_size"] == 2  # capped at N/2 so the subsets differ
    assert first.metrics["fid"].interval is not None and first.metrics["kid"].interval is not None
    # halves of 5 samples cannot hold k = 3 neighbours: a value, and the reason it has no interval
    assert first.metrics["precision"].interval is None and "k=3" in first.metrics["precision"].details["no_interval"]

    second = evaluate(test, train, num_samples=5, **kwargs)
    assert second.info["reference_cache"] == "hit" and "reference cache hit" in caplog.text
    assert second.metrics["fid"].value == pytest.approx(first.metrics["fid"].value, rel=1e-9)
    # a different N or a different dataset is a different reference
    kwargs["metrics"] = "fid"
    assert evaluate(test, train, num_samples=4, **kwargs).info["reference_cache"] == "miss"
    assert evaluate(train, test, num_samples=4, **kwargs).info["reference_cache"] == "miss"


@pytest.mark.slow  # the first test in a session to load Inception converts it (tens of seconds)
def test_fid_of_a_set_against_itself_is_zero(tiny_shards, detector):
    images = ShardSource(tiny_shards[1]).images(range(4))
    report = evaluate(TensorSource(images), TensorSource(images.clone()), metrics="fid,pr", num_workers=0, use_cache=False, detector=detector)
    assert abs(report.metrics["fid"].value) < 1e-3
    assert (report.metrics["precision"].value, report.metrics["recall"].value) == (1.0, 1.0)


def test_generated_source_is_the_same_under_any_split():
    def generate(seeds: list[int]) -> torch.Tensor:
        out = [torch.randint(0, 256, (3, 16, 16), generator=torch.Generator().manual_seed(s), dtype=torch.uint8) for s in seeds]
        return torch.stack(out)

    source = GeneratedSource(generate, 10, base_seed=100, key="toy")
    whole = source.images(range(10))
    parts = torch.cat([source.images(range(lo, hi)) for lo, hi in even_slices(10, 3)])
    assert torch.equal(whole, parts)
    assert source.cache_key() == "generated-toy-seed100"
    with pytest.raises(ValueError, match="key="):
        GeneratedSource(generate, 10).cache_key()


def test_bad_requests_name_the_problem(tiny_shards):
    test = ShardSource(tiny_shards[1])
    with pytest.raises(ValueError, match="num_samples=999"):
        evaluate(test, test, metrics="fid", num_samples=999)
    with pytest.raises(ValueError, match="need reference images"):
        evaluate(test, None, metrics="fid")
    with pytest.raises(ValueError, match="unknown metric"):
        evaluate(test, test, metrics="fid,bogus")


@pytest.mark.parametrize("n,parts,batch", [(7, 2, 4), (10, 3, 4), (100, 3, 8), (3, 4, 4), (10, 3, 1)])
def test_worker_slices_are_whole_batches_covering_everything_once(n, parts, batch):
    slices = even_slices(n, parts, batch)
    assert len(slices) == parts and slices[0][0] == 0 and slices[-1][1] == n
    assert all(a[1] == b[0] for a, b in zip(slices, slices[1:]))  # contiguous, no overlap
    assert all(lo % batch == 0 for lo, _ in slices)  # every detector batch is the K = 1 batch
    sizes = [-(-(hi - lo) // batch) for lo, hi in slices]
    assert max(sizes) - min(sizes) <= 1
