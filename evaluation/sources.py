"""Where evaluation images come from: shards, image folders, tensors, or a sample generator.

Every source implements :class:`ImageSource`; workers call ``images(indices)`` on disjoint
index slices, so a source must give the same image for the same index in any process
(generated sources seed sample ``i`` with ``base_seed + i``) and must pickle (Ray actors).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Callable, Optional, Protocol, Sequence, runtime_checkable

import numpy as np
import torch

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp")


@runtime_checkable
class ImageSource(Protocol):
    """A finite, indexable set of images."""

    def __len__(self) -> int: ...

    def images(self, indices: Sequence[int]) -> torch.Tensor:
        """uint8 (n, 3, H, W) images for ``indices`` (in that order)."""
        ...

    def cache_key(self) -> str:
        """Stable identity of the content, used to key cached reference statistics."""
        ...

    def describe(self) -> str:
        """One line for logs and reports."""
        ...

    # Optional: ``prepare(self) -> None`` loads what ``images`` needs (e.g. model weights);
    # workers call it before timing, so throughputs measure generation, not loading.


def _runs(indices: Sequence[int]) -> list[tuple[int, int]]:
    """Group indices into contiguous [start, stop) runs (workers ask for contiguous slices)."""
    runs: list[tuple[int, int]] = []
    for i in indices:
        if runs and runs[-1][1] == i:
            runs[-1] = (runs[-1][0], i + 1)
        else:
            runs.append((i, i + 1))
    return runs


def _check_range(indices: Sequence[int], n: int, what: str) -> None:
    if len(indices) and (min(indices) < 0 or max(indices) >= n):
        raise IndexError(f"{what} has {n} images; asked for indices {min(indices)}..{max(indices)}")


def _rgb(images: torch.Tensor) -> torch.Tensor:
    if images.shape[1] == 1:  # grey datasets (Fashion-MNIST) are replicated to RGB
        images = images.expand(-1, 3, -1, -1)
    return images.contiguous()


class ShardSource:
    """Images of a webdataset shard directory (``platform.data``), as the training loader sees them.

    Image i is the sample at position ``order[i]``, where ``order`` is a seeded random
    permutation of the split (``subset_seed``; ``None`` keeps manifest order), so the first
    N_ref images are a random draw even when the build did not shuffle. Images are resized
    to ``resolution`` with the training loader's own resize (``None``: the stored size).
    """

    def __init__(self, shards_dir: str | os.PathLike, *, resolution: Optional[int] = None,
                 subset_seed: Optional[int] = 0) -> None:
        from platform.data.manifest import load_manifest

        self.shards_dir = str(shards_dir)
        manifest = load_manifest(self.shards_dir)
        self.dataset_id = manifest.dataset_id
        self.name = manifest.name
        self.split = manifest.split
        self.stored_size = manifest.image_size
        self.image_size = int(resolution or manifest.image_size)
        self.num_samples = manifest.num_samples
        self.subset_seed = subset_seed
        self.order = (np.arange(self.num_samples) if subset_seed is None
                      else np.random.default_rng(subset_seed).permutation(self.num_samples))

    def __len__(self) -> int:
        return self.num_samples

    def images(self, indices: Sequence[int]) -> torch.Tensor:
        from platform.data.loader import read_positions, resize

        _check_range(indices, len(self), self.describe())
        if not len(indices):
            return torch.zeros(0, 3, self.image_size, self.image_size, dtype=torch.uint8)
        pixels = read_positions(self.shards_dir, [int(p) for p in self.order[list(indices)]])[0]
        if self.image_size != self.stored_size:  # exactly the training batches' [-1, 1] pixels, back to uint8
            pixels = ((resize(pixels.float() / 127.5 - 1.0, self.image_size) + 1.0) * 127.5).round().to(torch.uint8)
        return _rgb(pixels)

    def cache_key(self) -> str:
        order = "manifest" if self.subset_seed is None else f"perm{self.subset_seed}"
        resized = "" if self.image_size == self.stored_size else f"-from{self.stored_size}px-bicubic-aa"
        return f"shards-{self.dataset_id}-{self.split}-{self.image_size}px{resized}-{order}"

    def describe(self) -> str:
        order = "manifest order" if self.subset_seed is None else f"random order, seed {self.subset_seed}"
        return (f"shards {self.shards_dir} ({self.name}/{self.split}, {self.num_samples} images, {self.stored_size}px "
                f"read at {self.image_size}px, {order})")


class FolderSource:
    """Image files under a folder (recursive, sorted by relative path), decoded to RGB."""

    def __init__(self, root: str | os.PathLike) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise FileNotFoundError(f"image folder {self.root} does not exist")
        self.files = sorted(p.relative_to(self.root).as_posix() for p in self.root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
        if not self.files:
            raise ValueError(f"no images ({', '.join(IMAGE_SUFFIXES)}) under {self.root}")

    def __len__(self) -> int:
        return len(self.files)

    def images(self, indices: Sequence[int]) -> torch.Tensor:
        from PIL import Image

        _check_range(indices, len(self), self.describe())
        arrays = []
        for i in indices:
            with Image.open(self.root / self.files[i]) as im:
                arrays.append(np.asarray(im.convert("RGB")))
        shapes = {a.shape for a in arrays}
        if len(shapes) > 1:
            raise ValueError(f"images under {self.root} differ in size ({sorted(shapes)}); resize them to one size first")
        if not arrays:
            return torch.zeros(0, 3, 1, 1, dtype=torch.uint8)
        return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous()

    def cache_key(self) -> str:
        # Names, sizes and modification times: cheap, and changes when any file does.
        digest = hashlib.sha256()
        for name in self.files:
            st = (self.root / name).stat()
            digest.update(f"{name}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
        return f"folder-{digest.hexdigest()[:16]}"

    def describe(self) -> str:
        return f"folder {self.root} ({len(self)} images)"


class TensorSource:
    """An in-memory uint8 (N, 3, H, W) tensor (tests, reconstructions for rFID)."""

    def __init__(self, images: torch.Tensor, name: str = "tensor") -> None:
        if images.dtype != torch.uint8 or images.dim() != 4 or images.shape[1] not in (1, 3):
            raise ValueError(f"TensorSource takes uint8 (N, 3, H, W) images, got {images.dtype} {tuple(images.shape)}")
        self.data = _rgb(images.cpu())
        self.name = name

    def __len__(self) -> int:
        return self.data.shape[0]

    def images(self, indices: Sequence[int]) -> torch.Tensor:
        _check_range(indices, len(self), self.describe())
        return self.data[list(indices)]

    def cache_key(self) -> str:
        return f"tensor-{hashlib.sha256(self.data.numpy().tobytes()).hexdigest()[:16]}"

    def describe(self) -> str:
        return f"{self.name} ({len(self)} images, {self.data.shape[-1]}px)"


class GeneratedSource:
    """Images produced on demand by ``generate(seeds) -> uint8 (n, 3, H, W)``.

    Sample ``i`` is generated with seed ``base_seed + i``, so any split of the indices over
    workers yields the same images. ``generate`` must be picklable (a module-level function
    or an object with ``__call__``) and seed each sample from its own seed only.
    """

    def __init__(
        self,
        generate: Callable[[list[int]], torch.Tensor],
        num_samples: int,
        *,
        base_seed: int = 0,
        name: str = "generated",
        key: Optional[str] = None,
    ) -> None:
        self.generate = generate
        self.num_samples = int(num_samples)
        self.base_seed = int(base_seed)
        self.name = name
        self.key = key

    def __len__(self) -> int:
        return self.num_samples

    def images(self, indices: Sequence[int]) -> torch.Tensor:
        _check_range(indices, len(self), self.describe())
        out = self.generate([self.base_seed + i for i in indices])
        if out.dtype != torch.uint8 or out.dim() != 4 or out.shape[0] != len(indices):
            raise ValueError(f"{self.name}: generate() must return uint8 ({len(indices)}, 3, H, W), got {out.dtype} {tuple(out.shape)}")
        return _rgb(out.cpu())

    def cache_key(self) -> str:
        if self.key is None:
            raise ValueError(f"{self.name}: pass key= (e.g. a checkpoint hash) to cache statistics of generated images")
        return f"generated-{self.key}-seed{self.base_seed}"

    def describe(self) -> str:
        return f"{self.name} ({self.num_samples} samples, seeds {self.base_seed}..{self.base_seed + self.num_samples - 1})"


def open_source(location: str | os.PathLike) -> ImageSource:
    """A shard directory (has ``manifest.json``) or an image folder, chosen by content."""
    path = Path(location)
    if (path / "manifest.json").is_file():
        return ShardSource(path)
    if path.is_dir():
        return FolderSource(path)
    raise FileNotFoundError(f"{location} is neither a shard directory (with manifest.json) nor an image folder")
