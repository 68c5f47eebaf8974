"""The one loader training and evaluation call: ``make_loader`` (streaming) and ``read_range``.

Batches are dicts: ``image`` float (B, 3, H, W) in [-1, 1], ``label`` long (B,),
``caption`` list[str], ``key`` list[str]. The order is a function of (seed, epoch, rank,
world_size, num_workers, batch_size) alone, so a resumed run passes ``epoch`` and
``skip_batches`` and continues exactly where it stopped.
"""

from __future__ import annotations

import os
import random
import warnings
from collections import deque
from typing import Any, Iterator, Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from platform.data import plan
from platform.data.locations import join
from platform.data.manifest import DataError, Manifest, load_manifest
from platform.data.reader import ShardError, decode_sample, iter_shard, torchvision_png

OnError = Literal["raise", "skip"]
ON_ERROR: tuple[str, ...] = ("raise", "skip")


def resize(images: torch.Tensor, resolution: int) -> torch.Tensor:
    """Float (B, 3, H, W) images in [-1, 1] at ``resolution`` px (bicubic, antialiased).

    The one resize of training batches; evaluation references go through it too, so the
    reference images are what the model was trained to produce.
    """
    if images.shape[-1] == resolution and images.shape[-2] == resolution:
        return images
    return F.interpolate(images, size=(resolution, resolution), mode="bicubic", antialias=True,
                         align_corners=False).clamp_(-1.0, 1.0)


def _shuffled(items: Iterator[dict], size: int, rng: random.Random) -> Iterator[dict]:
    """Shuffle buffer: hold ``size`` items, emit a random one as each new one arrives."""
    buffer: list[dict] = []
    for item in items:
        if len(buffer) < size:
            buffer.append(item)
            continue
        j = rng.randrange(size)
        buffer[j], item = item, buffer[j]
        yield item
    rng.shuffle(buffer)
    yield from buffer


class _ShardStream(IterableDataset):
    """Per-worker stream of batches; see ``make_loader`` for the arguments."""

    def __init__(self, manifest: Manifest, location: str, *, batch_size: int, rank: int, world_size: int,
                 num_workers: int, seed: int, epoch: int, resampled: bool, shuffle: bool,
                 resolution: int, on_error: str, shuffle_buffer: int, drop_last: bool, skip_batches: int) -> None:
        self.manifest, self.location = manifest, location
        self.batch_size, self.rank, self.world_size, self.num_workers = batch_size, rank, world_size, num_workers
        self.seed, self.epoch, self.resampled, self.shuffle = seed, epoch, resampled, shuffle
        self.resolution, self.on_error, self.shuffle_buffer = resolution, on_error, shuffle_buffer
        self.drop_last, self.skip_batches = drop_last, skip_batches

    # -- which samples -------------------------------------------------------------------
    def rank_count(self) -> int:
        lo, hi = plan.even_slice(self.manifest.num_samples, self.world_size, self.rank)
        return hi - lo

    def worker_range(self, worker: int) -> tuple[int, int]:
        """This worker's slice of the epoch stream (same every epoch; the shard order changes)."""
        start, _ = plan.even_slice(self.manifest.num_samples, self.world_size, self.rank)
        lo, hi = plan.worker_slice(self.rank_count(), num_workers=self.num_workers, worker=worker,
                                   batch_size=self.batch_size, whole_batches=not self.resampled)
        return start + lo, start + hi

    def worker_batches(self, worker: int) -> int | None:
        if self.resampled:
            return None
        lo, hi = self.worker_range(worker)
        return (hi - lo) // self.batch_size if self.drop_last else -(-(hi - lo) // self.batch_size)

    def resume_point(self) -> tuple[list[int], int]:
        return plan.resume_point([self.worker_batches(w) for w in range(self.num_workers)], self.skip_batches)

    # -- the stream ----------------------------------------------------------------------
    def _raw_epoch(self, epoch: int, worker: int, counter: list[int]) -> Iterator[dict]:
        order = plan.shard_order(len(self.manifest.shards), seed=self.seed, epoch=epoch, shuffle=self.shuffle)
        lo, hi = self.worker_range(worker)
        raw = self._raw_segments(plan.segments(self.manifest, order, lo, hi), counter)
        if self.shuffle and self.shuffle_buffer > 1:
            raw = _shuffled(raw, self.shuffle_buffer, random.Random(plan.rng_seed(self.seed, epoch, self.rank, worker)))
        return raw

    def _raw_segments(self, segs: list[plan.Segment], counter: list[int]) -> Iterator[dict]:
        for seg in segs:
            url = join(self.location, self.manifest.shards[seg.shard].name)
            seen = 0
            try:
                for raw in iter_shard(url, skip=seg.skip, take=seg.take):
                    seen += 1
                    raw["__url__"] = url
                    yield raw
            except ShardError as exn:
                # A broken tar loses the rest of this segment: count every sample not delivered.
                self._handle(exn, counter, lost=seg.take - seen)

    def _handle(self, exn: ShardError, counter: list[int], lost: int = 1) -> None:
        if self.on_error == "raise":
            raise exn
        counter[0] += lost
        warnings.warn(f"skipped {lost} sample(s) (on_error=skip): {exn}", RuntimeWarning, stacklevel=2)

    def _decoded(self, raws: Iterator[dict], counter: list[int]) -> Iterator[tuple[torch.Tensor, int, str, str]]:
        for raw in raws:
            try:
                image, label, caption = decode_sample(raw, raw["__url__"], image_size=self.manifest.image_size)
            except ShardError as exn:
                self._handle(exn, counter)
                continue
            yield image, label, caption, raw["__key__"]

    def _collate(self, items: list[tuple[torch.Tensor, int, str, str]]) -> dict[str, Any]:
        # uint8 -> [-1, 1] in numpy: single-threaded by design. torch would split this small
        # op over its intra-op thread pool, which costs 100x more than the work on a busy CPU.
        pixels = np.stack([item[0].numpy() for item in items])  # (B, 3, H, W) uint8
        images = np.multiply(pixels, np.float32(1 / 127.5), dtype=np.float32)
        images = resize(torch.from_numpy(np.subtract(images, np.float32(1.0), out=images)), self.resolution)
        return {"image": images, "label": torch.tensor([item[1] for item in items], dtype=torch.long),
                "caption": [item[2] for item in items], "key": [item[3] for item in items]}

    def __iter__(self) -> Iterator[dict[str, Any]]:
        info = get_worker_info()
        worker = info.id if info is not None else 0
        counter = [0]  # samples skipped by this worker (on_error="skip")
        skip = self.resume_point()[0][worker] * self.batch_size
        lo, hi = self.worker_range(worker)
        if self.resampled and hi == lo:
            raise DataError(f"{self.location}: rank {self.rank} worker {worker} has no samples "
                            f"({self.manifest.num_samples} samples for {self.world_size} ranks x "
                            f"{self.num_workers} workers); use fewer workers")
        epoch = self.epoch
        if self.resampled:
            epoch += skip // (hi - lo)  # whole epochs of this worker's slice need not be read
            skip %= hi - lo
        batch: list = []
        while True:
            raws = self._raw_epoch(epoch, worker, counter)
            for _ in range(skip):  # resume: drop raw samples without decoding them
                if next(raws, None) is None:
                    break
            skip = 0
            for item in self._decoded(raws, counter):
                batch.append(item)
                if len(batch) == self.batch_size:
                    yield {**self._collate(batch), "_skipped": counter[0], "_worker": worker}
                    batch = []
            if not self.resampled:
                break
            epoch += 1
        if batch and not self.drop_last:
            yield {**self._collate(batch), "_skipped": counter[0], "_worker": worker}
        # Final count even when the last samples of a worker were the skipped ones.
        yield {"_skipped": counter[0], "_worker": worker, "_final": True}


class ShardLoader:
    """Iterable of batch dicts (see module docstring); ``make_loader`` builds it.

    Attributes:
        manifest: the dataset's manifest.
        skipped: samples dropped so far under ``on_error="skip"`` (log it, e.g. ``data/skipped``).
    """

    def __init__(self, stream: _ShardStream, *, processes: int) -> None:
        self._stream = stream
        self._processes = processes
        self.manifest = stream.manifest
        self._skipped_done = 0  # from finished iterations
        self._skipped_now: dict[int, int] = {}

    @property
    def skipped(self) -> int:
        return self._skipped_done + sum(self._skipped_now.values())

    @property
    def epoch(self) -> int:
        return self._stream.epoch

    def set_epoch(self, epoch: int) -> None:
        """Read ``epoch`` next (new shard order and shuffle); clears ``skip_batches``."""
        self._stream.epoch = epoch
        self._stream.skip_batches = 0

    def __len__(self) -> int:
        """Batches this rank yields per epoch (ranks can differ by one when N % world_size != 0)."""
        if self._stream.resampled:
            raise TypeError("a resampled loader is endless; count steps instead")
        total = sum(self._stream.worker_batches(w) for w in range(self._stream.num_workers))
        return max(total - self._stream.skip_batches, 0)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        stream = self._stream
        if self._processes == 0:
            batches = iter(stream)
        else:
            # fork, whatever the process-wide default: a spawned worker would re-import
            # ``platform`` and could get the stdlib module this package shadows (DESIGN §4).
            batches = iter(DataLoader(stream, batch_size=None, num_workers=self._processes,
                                      persistent_workers=False, multiprocessing_context="fork"))
        self._skipped_now = {}
        try:
            yield from self._in_schedule(batches, first=stream.resume_point()[1])
        finally:
            self._skipped_done += sum(self._skipped_now.values())
            self._skipped_now = {}

    def _in_schedule(self, batches: Iterator[dict[str, Any]], *, first: int) -> Iterator[dict[str, Any]]:
        """Yield batches round robin from worker ``first`` on (``plan.schedule``).

        The DataLoader always starts its round robin at worker 0; after a resume the next
        batch may be another worker's, so batches wait here (at most about one per worker)
        until their turn.
        """
        workers = self._stream.num_workers
        queues: list[deque] = [deque() for _ in range(workers)]
        finished: set[int] = set()
        active = list(range(workers))
        turn = first

        def ready() -> Iterator[dict[str, Any]]:
            nonlocal turn
            while active:
                at = active.index(turn)
                if queues[turn]:
                    yield queues[turn].popleft()
                    turn = active[(at + 1) % len(active)]
                elif turn in finished:
                    active.pop(at)
                    turn = active[at % len(active)] if active else 0
                else:
                    return

        for batch in batches:
            worker = batch.pop("_worker")
            self._skipped_now[worker] = batch.pop("_skipped")
            if batch.pop("_final", False):
                finished.add(worker)
            else:
                queues[worker].append(batch)
            yield from ready()
        finished.update(range(workers))
        yield from ready()


def make_loader(
    shards_dir: str | os.PathLike,
    *,
    batch_size: int,
    rank: int = 0,
    world_size: int = 1,
    num_workers: int = 0,
    seed: int = 0,
    epoch: int = 0,
    resampled: bool = False,
    shuffle: bool = True,
    resolution: int | None = None,
    on_error: OnError = "raise",
    shuffle_buffer: int = 1000,
    drop_last: bool = False,
    skip_batches: int = 0,
) -> ShardLoader:
    """Stream a shard directory (local path, or http(s):// / s3:// prefix) as batches.

    Args:
        batch_size: samples per batch on this rank.
        rank, world_size: this process's slice; ranks' slices are disjoint and cover the data.
        num_workers: DataLoader worker processes (0 = read in this process).
        seed, epoch: the shard order and shuffle buffer derive from these (and rank, worker).
        resampled: an endless stream for step-based training: epochs ``epoch, epoch+1, ...``
            follow each other (each reshuffled), so no rank ever runs dry and a resumed
            run reproduces the order. Otherwise one epoch, every sample exactly once.
        shuffle: ``False`` reads in manifest order (evaluation, tests).
        resolution: output side length; resized (bicubic, antialiased) when it differs
            from the manifest's ``image_size``. ``None`` keeps the stored size.
        on_error: ``raise`` stops at the first bad sample or shard; ``skip`` drops it with a
            warning naming shard and key, counted in ``loader.skipped``.
        shuffle_buffer: samples held by each worker's shuffle buffer (<= 1 disables it).
        drop_last: drop this rank's final partial batch.
        skip_batches: resume: start at this batch of ``epoch`` (nothing before it is decoded).
    """
    if on_error not in ON_ERROR:
        raise ValueError(f"on_error must be one of {ON_ERROR}, got {on_error!r}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if not 0 <= rank < world_size:
        raise ValueError(f"rank {rank} is outside world_size {world_size}")
    manifest = load_manifest(shards_dir)
    if manifest.mode != "RGB" or "png" not in manifest.keys:
        raise DataError(f"{shards_dir}: holds {manifest.mode!r} samples with keys {list(manifest.keys)}, "
                        f"not images; make_loader reads image shards from `python -m platform.data build`")
    # num_workers=0 reads in this process, which splits the data like a single worker.
    stream = _ShardStream(manifest, str(shards_dir), batch_size=batch_size, rank=rank, world_size=world_size,
                          num_workers=max(num_workers, 1), seed=seed, epoch=epoch, resampled=resampled, shuffle=shuffle,
                          resolution=resolution or manifest.image_size, on_error=on_error,
                          shuffle_buffer=shuffle_buffer, drop_last=drop_last, skip_batches=skip_batches)
    torchvision_png()  # import the PNG decoder once here, not in every forked worker of every epoch
    return ShardLoader(stream, processes=num_workers)


def read_positions(shards_dir: str | os.PathLike, positions: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """Samples at manifest ``positions`` (any order, no repeats) as (uint8 images, labels), in that order.

    Reads each shard that holds some of them once, from its first to its last wanted sample.
    """
    manifest = load_manifest(shards_dir)
    if len(set(positions)) != len(positions):
        raise ValueError("read_positions: a position repeats")
    wanted = sorted(positions)
    if wanted and not 0 <= wanted[0] <= wanted[-1] < manifest.num_samples:
        raise ValueError(f"positions {wanted[0]}..{wanted[-1]} are outside {shards_dir} ({manifest.num_samples} samples)")
    found: dict[int, tuple[torch.Tensor, int]] = {}
    start = 0
    for shard in manifest.shards:
        inside = [p - start for p in wanted if start <= p < start + shard.count]
        if inside:
            url, keep = join(shards_dir, shard.name), set(inside)
            for offset, raw in enumerate(iter_shard(url, skip=inside[0], take=inside[-1] - inside[0] + 1), inside[0]):
                if offset in keep:
                    image, label, _ = decode_sample(raw, url, image_size=manifest.image_size)
                    found[start + offset] = (image, label)
        start += shard.count
    size = manifest.image_size
    if not positions:
        return torch.empty(0, 3, size, size, dtype=torch.uint8), torch.empty(0, dtype=torch.long)
    return (torch.stack([found[p][0] for p in positions]), torch.tensor([found[p][1] for p in positions], dtype=torch.long))


def read_range(shards_dir: str | os.PathLike, start: int, stop: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Samples ``[start, stop)`` in manifest order as (uint8 (n, 3, H, W) images, long (n,) labels).

    Opens only the shards that hold them, so evaluation workers can each take a disjoint
    slice of a reference set. Any bad sample raises ``ShardError`` (naming shard and key).
    """
    manifest = load_manifest(shards_dir)
    if not 0 <= start <= stop <= manifest.num_samples:
        raise ValueError(f"range [{start}, {stop}) is outside {shards_dir} ({manifest.num_samples} samples)")
    images, labels = [], []
    order = list(range(len(manifest.shards)))
    for seg in plan.segments(manifest, order, start, stop):
        url = join(shards_dir, manifest.shards[seg.shard].name)
        for raw in iter_shard(url, skip=seg.skip, take=seg.take):
            image, label, _ = decode_sample(raw, url, image_size=manifest.image_size)
            images.append(image)
            labels.append(label)
    if len(images) != stop - start:
        raise DataError(f"{shards_dir}: read {len(images)} samples for [{start}, {stop}); a shard is shorter "
                        f"than its manifest says; run `python -m platform.data verify {shards_dir}`")
    size = manifest.image_size
    return (torch.stack(images) if images else torch.empty(0, 3, size, size, dtype=torch.uint8),
            torch.tensor(labels, dtype=torch.long))
