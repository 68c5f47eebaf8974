"""``build``: a ``Source`` -> PNG samples in deterministic tar shards + ``manifest.json``."""

from __future__ import annotations

import os
import shutil
import sys
import time
from pathlib import Path

import numpy as np

from platform.data.imaging import FITS, encode_png, fit_image
from platform.data.manifest import DataError, Manifest
from platform.data.shards import ShardWriter
from platform.data.sources import Source


def sample_order(length: int, *, limit: int | None, shuffle: bool, seed: int) -> np.ndarray:
    """Source indices in write order: the first ``limit`` of the source, permuted by ``seed`` if ``shuffle``.

    Shuffling at build time mixes classes across shards, so shard-level shuffling in the
    loader is not fed class-sorted shards (image folders come sorted by class).
    """
    count = length if limit is None else min(limit, length)
    order = np.arange(count)
    if shuffle:
        order = np.random.default_rng(seed).permutation(count)
    return order


def build_dataset(
    source: Source,
    out_dir: str | os.PathLike,
    *,
    size: int = 32,
    fit: str | None = None,
    samples_per_shard: int = 1000,
    seed: int = 0,
    shuffle: bool = True,
    limit: int | None = None,
    progress: bool = True,
) -> Manifest:
    """Write ``source`` as shards of ``samples_per_shard`` samples under ``out_dir``.

    Each sample: ``KEY.png`` (lossless RGB, ``size`` x ``size``), ``KEY.cls`` (label as ASCII
    digits), ``KEY.txt`` (caption, UTF-8); ``KEY`` is the zero-padded source index.

    Args:
        fit: ``pad`` | ``resize`` | ``crop`` (see ``imaging.fit_image``); ``None`` = the source's default.
        seed, shuffle: write order (see ``sample_order``); recorded in the manifest.
        limit: first N samples of the source (quick tests).
        progress: a line on stderr about every 2 s, and one at the end.

    The shards are written to a hidden sibling directory and swapped in when complete:
    an interrupted or failed rebuild leaves the previous dataset at ``out_dir`` intact.
    """
    fit = fit or source.default_fit
    if fit not in FITS:
        raise DataError(f"--fit must be one of {FITS}, got {fit!r}")
    if size < 1:
        raise DataError(f"--size must be positive, got {size}")
    order = sample_order(source.length, limit=limit, shuffle=shuffle, seed=seed)
    options = {"size": size, "fit": fit, "samples_per_shard": samples_per_shard,
               "seed": seed, "shuffle": shuffle, "limit": limit}
    if source.unconditional:
        options["unconditional"] = True
    out = Path(out_dir)
    staging = out.parent / f".{out.name}.building-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    try:
        manifest = _write_shards(source, order, staging, size=size, fit=fit, samples_per_shard=samples_per_shard,
                                 options=options, progress=progress)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    _swap_in(staging, out)
    if progress:
        print(f"[build] wrote {manifest.num_samples} samples in {len(manifest.shards)} shards to "
              f"{out} (dataset id {manifest.dataset_id})", file=sys.stderr, flush=True)
    return manifest


def _swap_in(staging: Path, out: Path) -> None:
    """Replace ``out`` by the complete ``staging`` directory: two renames, never a half-written dataset.

    A crash between the renames leaves the previous build under ``.<name>.old-<pid>``.
    """
    if not out.exists():
        out.parent.mkdir(parents=True, exist_ok=True)
        os.replace(staging, out)
        return
    old = out.parent / f".{out.name}.old-{os.getpid()}"
    os.replace(out, old)
    os.replace(staging, out)
    shutil.rmtree(old)


def _write_shards(source: Source, order: np.ndarray, out_dir: Path, *, size: int, fit: str, samples_per_shard: int,
                  options: dict, progress: bool) -> Manifest:
    writer = ShardWriter(out_dir, name=source.name, split=source.split, image_size=size, mode="RGB",
                         class_names=source.class_names, samples_per_shard=samples_per_shard, options=options)
    started = last = time.monotonic()
    with writer:
        for done, index in enumerate(order, 1):
            index = int(index)
            pixels, label, caption = source.load(index)
            try:
                image = fit_image(pixels, size, fit)
            except ValueError as exn:
                raise DataError(f"{source.name} sample {index}: {exn}") from None
            writer.write({"__key__": f"{index:08d}", "png": encode_png(image), "cls": label, "txt": caption})
            now = time.monotonic()
            if progress and now - last > 2.0:
                last = now
                rate = done / max(now - started, 1e-9)
                print(f"[build {source.name}/{source.split}] {done}/{len(order)} samples "
                      f"({100 * done // max(len(order), 1)}%), {len(writer.shards)} shards done, {rate:.0f} img/s",
                      file=sys.stderr, flush=True)
    return writer.manifest
