"""``python -m platform.bench data``: images/s of the platform loader vs raw webdataset vs PIL files.

All three read the same images at the same resolution and batch size and hand out float
(B, 3, H, W) batches in [-1, 1] with labels, in storage order:

- platform: ``platform.data.loader.make_loader`` on the shards;
- webdataset: ``webdataset.WebDataset(shards).decode("torchrgb").to_tuple(...).batched(B)``;
- PIL files: the same PNG bytes as one file per image, ``PIL.Image.open`` in a map-style
  Dataset under a ``torch.utils.data.DataLoader``.

Targets: platform >= 0.9x webdataset and >= 2x PIL files. Each figure is the best of
``--repeats`` passes, interleaved across the three (these machines are shared and noisy);
only ratios from one run compare.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Callable, Iterable

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--shards", help="shard directory to read (default: build Fashion-MNIST, or digits, in a temp dir)")
    parser.add_argument("--samples", type=int, default=10000, help="images to build when --shards is not given")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--num-workers", type=int, default=0, help="DataLoader workers, the same for all three")
    parser.add_argument("--resolution", type=int, default=None, help="output side (default: the stored size)")
    parser.add_argument("--repeats", type=int, default=5, help="passes per loader; the best counts")
    parser.add_argument("--torch-threads", type=int, default=1,
                        help="intra-op threads in this process (1, as in DataLoader workers; default 1)")


class _PngFiles(Dataset):
    """One PNG file per image, decoded with PIL: the per-file baseline."""

    def __init__(self, files: list[Path], labels: list[int]) -> None:
        self.files, self.labels = files, labels

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        with Image.open(self.files[index]) as image:
            pixels = np.array(image.convert("RGB"))  # a writable copy, as torch wants
        return torch.from_numpy(pixels).permute(2, 0, 1).float().div_(127.5).sub_(1.0), self.labels[index]


def _resize(images: torch.Tensor, resolution: int | None) -> torch.Tensor:
    if resolution is None or images.shape[-1] == resolution:
        return images
    return torch.nn.functional.interpolate(images, size=(resolution, resolution), mode="bicubic", antialias=True)


def _best_rates(loaders: dict[str, tuple[Callable[[], Iterable], Callable[[object], int]]],
                repeats: int) -> dict[str, tuple[float, int]]:
    """Best images/s (and images seen) per loader; passes are interleaved so that load from
    other processes on a shared machine hits all loaders alike."""
    best: dict[str, tuple[float, int]] = {name: (0.0, 0) for name in loaders}
    for _ in range(repeats):
        for name, (make, count_of) in loaders.items():
            start = time.perf_counter()
            seen = sum(count_of(batch) for batch in make())
            best[name] = (max(best[name][0], seen / (time.perf_counter() - start)), seen)
    return best


def _default_shards(root: Path, samples: int) -> Path:
    from platform.data.build import build_dataset
    from platform.data.sources import FASHION_MNIST_DIR, digits, fashion_mnist

    if (FASHION_MNIST_DIR / "train-images-idx3-ubyte.gz").is_file():
        source = fashion_mnist("train")
    else:
        source = digits("train")
    build_dataset(source, root / "shards", size=32, samples_per_shard=1000, limit=samples, progress=False)
    return root / "shards"


def _export_pngs(shards: Path, out: Path) -> tuple[list[Path], list[int]]:
    from platform.data.manifest import load_manifest
    from platform.data.reader import iter_shard

    out.mkdir(parents=True, exist_ok=True)
    files, labels = [], []
    for shard in load_manifest(shards).shards:
        for raw in iter_shard(str(shards / shard.name)):
            path = out / f"{raw['__key__']}.png"
            path.write_bytes(raw["png"])  # the very bytes stored in the shard
            files.append(path)
            labels.append(int(raw["cls"]))
    return files, labels


def run(args: argparse.Namespace) -> None:
    import webdataset as wds

    from platform.data.loader import make_loader
    from platform.data.manifest import load_manifest
    from platform.data.reader import torchvision_png

    torch.set_num_threads(args.torch_threads)
    batch, workers, resolution = args.batch_size, args.num_workers, args.resolution
    with tempfile.TemporaryDirectory(prefix="bench_data_") as tmp:
        shards = Path(args.shards) if args.shards else _default_shards(Path(tmp), args.samples)
        manifest = load_manifest(shards)
        urls = [str(shards / s.name) for s in manifest.shards]
        files, labels = _export_pngs(shards, Path(tmp) / "png")

        def platform_loader() -> Iterable:
            return make_loader(shards, batch_size=batch, num_workers=workers, shuffle=False, resolution=resolution)

        def webdataset_loader() -> Iterable:
            pipeline = (wds.WebDataset(urls, shardshuffle=False, empty_check=False).decode("torchrgb")
                        .to_tuple("png", "cls", "txt").batched(batch))
            batches = DataLoader(pipeline, batch_size=None, num_workers=workers) if workers else pipeline
            return ((_resize(images * 2.0 - 1.0, resolution), labels_, captions)
                    for images, labels_, captions in batches)

        def pil_loader() -> Iterable:
            batches = DataLoader(_PngFiles(files, labels), batch_size=batch, num_workers=workers, shuffle=False)
            return ((_resize(images, resolution), labels_) for images, labels_ in batches)

        torchvision_png()  # one-off import (~2 s) of the PNG decoder: start-up, not throughput
        measured = _best_rates({"platform": (platform_loader, lambda b: len(b["key"])),
                                "webdataset": (webdataset_loader, lambda b: len(b[1])),
                                "pil_files": (pil_loader, lambda b: len(b[1]))}, args.repeats)
        counts = {name: seen for name, (_, seen) in measured.items()}
        if set(counts.values()) != {manifest.num_samples}:
            raise RuntimeError(f"loaders saw different counts: {counts} (manifest: {manifest.num_samples})")
        rates = {name: rate for name, (rate, _) in measured.items()}

    size = resolution or manifest.image_size
    print(f"data loader benchmark: {manifest.num_samples} images ({manifest.name}), {size}x{size}, "
          f"batch {batch}, workers {workers}, torch threads {args.torch_threads}, best of {args.repeats}")
    print(f"  {'platform loader':<28} {rates['platform']:>10.0f} images/s")
    print(f"  {'raw webdataset .decode()':<28} {rates['webdataset']:>10.0f} images/s")
    print(f"  {'PNG files with PIL':<28} {rates['pil_files']:>10.0f} images/s")
    print(f"  ratio platform / webdataset  {rates['platform'] / rates['webdataset']:>8.2f}x   (target >= 0.9x)")
    print(f"  ratio platform / PIL files   {rates['platform'] / rates['pil_files']:>8.2f}x   (target >= 2x)")
