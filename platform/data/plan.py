"""Who reads which samples: pure arithmetic over the manifest, shared by loader and tests.

One epoch is the manifest's shards in a seeded order (``shard_order``), read as one stream
of ``N`` samples. Rank ``r`` of ``R`` takes the contiguous slice ``[N*r/R, N*(r+1)/R)``;
inside a rank, DataLoader workers take contiguous runs of whole batches. Slices are
disjoint and cover the stream, so every sample is seen exactly once per epoch, and a
worker opens only the shards its slice touches.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Iterator

import numpy as np

from platform.data.manifest import Manifest


@dataclass(frozen=True)
class Segment:
    """Samples ``skip .. skip+take`` (tar order) of shard ``shard`` (its manifest index)."""

    shard: int
    skip: int
    take: int


def rng_seed(*parts: int) -> int:
    """One 64-bit seed from several integers (seed, epoch, rank, worker), stable across runs."""
    return int(np.random.SeedSequence([int(p) for p in parts]).generate_state(1, dtype=np.uint64)[0])


def shard_order(num_shards: int, *, seed: int, epoch: int, shuffle: bool) -> list[int]:
    """Shard indices in this epoch's reading order (manifest order when not shuffled)."""
    if not shuffle:
        return list(range(num_shards))
    return [int(i) for i in np.random.default_rng(rng_seed(seed, epoch, 0x5A)).permutation(num_shards)]


def even_slice(n: int, parts: int, part: int) -> tuple[int, int]:
    """``[start, stop)`` of part ``part`` when ``n`` items are split into ``parts`` near-equal runs."""
    return n * part // parts, n * (part + 1) // parts


def worker_slice(n: int, *, num_workers: int, worker: int, batch_size: int, whole_batches: bool) -> tuple[int, int]:
    """A worker's run inside its rank's ``n`` samples.

    With ``whole_batches`` every worker but the last holding data gets a multiple of
    ``batch_size``, so an epoch has at most one partial batch per rank (as a map-style
    DataLoader would). Otherwise samples are split evenly (endless streams never end a batch).
    """
    if not whole_batches:
        return even_slice(n, num_workers, worker)
    batches = -(-n // batch_size)
    first, last = even_slice(batches, num_workers, worker)
    return min(first * batch_size, n), min(last * batch_size, n)


def segments(manifest: Manifest, order: list[int], start: int, stop: int) -> list[Segment]:
    """The pieces of shards holding stream positions ``[start, stop)`` when shards are read in ``order``."""
    out: list[Segment] = []
    position = 0
    for shard in order:
        count = manifest.shards[shard].count
        lo, hi = max(start, position), min(stop, position + count)
        if lo < hi:
            out.append(Segment(shard, lo - position, hi - lo))
        position += count
        if position >= stop:
            break
    return out


def schedule(batches_per_worker: list[int | None]) -> Iterator[int]:
    """Worker ids in the order their batches reach the consumer (``None`` = an endless worker).

    Round robin over workers, passing over exhausted ones: the rule a DataLoader over an
    iterable dataset follows, and the order ``ShardLoader`` restores after a resume.
    """
    taken = [0] * len(batches_per_worker)
    while True:
        progressed = False
        for worker, total in enumerate(batches_per_worker):
            if total is None or taken[worker] < total:
                taken[worker] += 1
                progressed = True
                yield worker
        if not progressed:
            return


def resume_point(batches_per_worker: list[int | None], skip_batches: int) -> tuple[list[int], int]:
    """(batches each worker drops, worker whose batch comes next) to resume at batch ``skip_batches``."""
    skipped = [0] * len(batches_per_worker)
    order = schedule(batches_per_worker)
    for worker in itertools.islice(order, skip_batches):
        skipped[worker] += 1
    return skipped, next(order, 0)
