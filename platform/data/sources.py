"""Where build gets images: Fashion-MNIST idx files, an image folder, the bundled test sets.

A ``Source`` gives random access to ``(pixels, label, caption)`` by source index; the index
becomes the sample key, so shards trace back to the input (and build can write a seeded
permutation without holding the dataset in memory).
"""

from __future__ import annotations

import gzip
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image, UnidentifiedImageError

from platform.data.imaging import caption_for
from platform.data.manifest import DataError

FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
FASHION_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                   "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")
FASHION_CAPTIONS = ("a photo of a t-shirt", "a photo of trousers", "a photo of a pullover",
                    "a photo of a dress", "a photo of a coat", "a photo of a sandal",
                    "a photo of a shirt", "a photo of a sneaker", "a photo of a bag",
                    "a photo of an ankle boot")
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp"}

Sample = tuple[np.ndarray, int, str]


@dataclass(frozen=True)
class Source:
    """A dataset to build: ``load(i)`` gives ``(uint8 pixels, label, caption)`` for ``0 <= i < length``."""

    name: str
    split: str
    class_names: tuple[str, ...]
    length: int
    default_fit: str
    load: Callable[[int], Sample]
    unconditional: bool = False  # a flat folder: no classes, every label is 0


def _read_idx(path: Path, magic: int) -> np.ndarray:
    # idx format: big-endian int32 magic, then one int32 per dimension, then uint8 data.
    if not path.is_file():
        raise DataError(f"{path}: missing; install `dataset-fashion-mnist` (apt) or pass --path DIR")
    with gzip.open(path, "rb") as handle:
        data = handle.read()
    ndim = data[3]
    found = int.from_bytes(data[:4], "big")
    if found != magic:
        raise DataError(f"{path}: idx magic {found}, expected {magic}; not a Fashion-MNIST file")
    shape = [int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    body = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if body.size != int(np.prod(shape)):
        raise DataError(f"{path}: {body.size} bytes of data for shape {shape}; the file is truncated")
    return body.reshape(shape)


def fashion_mnist(split: str, path: str | Path | None = None) -> Source:
    """Fashion-MNIST (70k 28x28 grey, 10 classes) from idx ``.gz`` files (Debian package by default)."""
    if split not in ("train", "test"):
        raise DataError(f"fashion-mnist split must be 'train' or 'test', got {split!r}")
    root = Path(path) if path else FASHION_MNIST_DIR
    prefix = "train" if split == "train" else "t10k"
    images = _read_idx(root / f"{prefix}-images-idx3-ubyte.gz", 2051)
    labels = _read_idx(root / f"{prefix}-labels-idx1-ubyte.gz", 2049)
    if len(images) != len(labels):
        raise DataError(f"{root}: {len(images)} {split} images but {len(labels)} labels")

    def load(i: int) -> Sample:
        label = int(labels[i])
        return images[i], label, FASHION_CAPTIONS[label]

    return Source("fashion-mnist", split, FASHION_CLASSES, len(images), "pad", load)


def _bundled_split(n: int, split: str) -> np.ndarray:
    # The bundled sets have no split: every 5th sample is held out, which keeps classes balanced.
    if split not in ("train", "test"):
        raise DataError(f"split must be 'train' or 'test', got {split!r}")
    index = np.arange(n)
    return index[index % 5 == 4] if split == "test" else index[index % 5 != 4]


def digits(split: str) -> Source:
    """scikit-learn ``load_digits`` (1797 8x8 digits, values 0..16, scaled to 0..255)."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    pixels = np.round(bunch.images * (255.0 / 16.0)).astype(np.uint8)
    chosen = _bundled_split(len(pixels), split)
    names = tuple(str(d) for d in range(10))

    def load(i: int) -> Sample:
        label = int(bunch.target[chosen[i]])
        return pixels[chosen[i]], label, f"a photo of the digit {label}"

    return Source("digits", split, names, len(chosen), "resize", load)


def lfw_subset(split: str) -> Source:
    """scikit-image ``lfw_subset`` (200 25x25 grey: 100 faces, then 100 non-faces)."""
    from skimage.data import lfw_subset as load_lfw

    pixels = np.round(load_lfw() * 255.0).astype(np.uint8)
    chosen = _bundled_split(len(pixels), split)
    names = ("face", "background")

    def load(i: int) -> Sample:
        label = 0 if chosen[i] < 100 else 1
        return pixels[chosen[i]], label, caption_for(names[label])

    return Source("lfw-subset", split, names, len(chosen), "pad", load)


def _load_captions(path: Path) -> dict[str, str]:
    captions: dict[str, str] = {}
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
            name = entry.get("file_name") or entry.get("file") or entry["path"]
            text = entry.get("caption", entry.get("text"))
        except (json.JSONDecodeError, KeyError, AttributeError):
            raise DataError(f'{path}:{number}: need {{"file_name": "class/img.png", "caption": "..."}}') from None
        if not isinstance(text, str):
            raise DataError(f"{path}:{number}: no 'caption' string for {name!r}")
        captions[Path(name).as_posix()] = text
    return captions


def image_folder(root: str | Path, split: str, captions: str | Path | None = None) -> Source:
    """``ROOT/<class>/<image>`` (sorted class folders give labels), or a flat ``ROOT/<image>``.

    A flat folder is an unconditional dataset (CelebA-HQ, FFHQ, LSUN come this way): one
    class named after the folder, every label 0, ``Source.unconditional`` set. Captions
    default to ``a photo of a <class>``; lines of ``captions`` (JSONL, paths relative to
    ``root``) override them: ``{"file_name": "cat/001.png", "caption": "a cat asleep"}``.
    """
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root}: not a directory (expected ROOT/<class>/<image> or ROOT/<image>)")
    classes = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    files = [(f, label) for label, c in enumerate(classes)
             for f in sorted((root / c).rglob("*")) if f.suffix.lower() in IMAGE_SUFFIXES]
    flat = not files
    if flat:
        classes = [root.name]
        files = [(f, 0) for f in sorted(root.iterdir()) if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES]
    if not files:
        raise DataError(f"{root}: no images, neither in class sub-folders (ROOT/<class>/<image>.png) "
                        f"nor directly inside (ROOT/<image>.png); suffixes read: {' '.join(sorted(IMAGE_SUFFIXES))}")
    overrides = _load_captions(Path(captions)) if captions else {}

    def load(i: int) -> Sample:
        file, label = files[i]
        try:
            with Image.open(file) as image:
                pixels = np.asarray(image.convert("RGB"))
        except (UnidentifiedImageError, OSError, SyntaxError) as exn:
            raise DataError(f"{file}: cannot decode image ({exn}); fix or remove the file") from None
        rel = file.relative_to(root).as_posix()
        return pixels, label, overrides.get(rel, caption_for(classes[label]))

    return Source(root.name, split, tuple(classes), len(files), "crop", load, unconditional=flat)
