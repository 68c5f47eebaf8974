"""Reading shards: open a local path or URL, stream raw samples, decode one sample.

Errors name the shard and the sample key and say what to do (``ShardError``); the loader
turns them into ``raise`` or ``skip`` according to its policy, ``verify`` collects them.
"""

from __future__ import annotations

import functools
import io
import warnings
from typing import Callable, Iterator

import numpy as np
import torch
from PIL import Image

from platform.data.locations import is_url, open_url
from platform.data.manifest import DataError
from platform.data.tarstream import TarFormatError, iter_members

RawSample = dict[str, bytes]  # extension -> bytes, plus "__key__" -> key (str)


class ShardError(DataError):
    """A problem inside one shard: ``shard`` (URL or path), ``key`` (sample, or None for the tar itself)."""

    def __init__(self, shard: str, key: str | None = None, problem: str | None = None) -> None:
        if problem is None:
            # One finished message: how a DataLoader re-raises a worker's exception.
            super().__init__(shard)
        else:
            where = f"shard {shard}" + (f", sample {key!r}" if key else "")
            super().__init__(f"{where}: {problem}; check it with `python -m platform.data verify DIR` and rebuild it")
        self.shard, self.key, self.problem = shard, key, problem


def _split_name(name: str) -> tuple[str, str]:
    # webdataset convention: the key is everything before the first dot of the file name.
    directory, _, base = name.rpartition("/")
    stem, dot, ext = base.partition(".")
    if not dot:
        return name, ""
    return (f"{directory}/{stem}" if directory else stem), ext.lower()


def iter_shard(url: str, *, skip: int = 0, take: int | None = None) -> Iterator[RawSample]:
    """Raw samples ``skip .. skip+take`` of one shard, in tar order, without decoding.

    Raises:
        ShardError: the file cannot be opened, the tar is corrupt or truncated (the last
            sample read is named; with ``take``, a shard that ends early counts as truncated),
            or a file name repeats within a sample.
    """
    try:
        stream = open_url(url)
    except OSError as exn:
        raise ShardError(url, None, f"cannot open ({exn})") from None
    index, current = -1, None
    stop = None if take is None else skip + take
    try:
        with stream:
            for name, data in iter_members(stream):
                key, ext = _split_name(name)
                if current is None or key != current["__key__"]:
                    if current is not None and index >= skip:
                        yield current
                    index += 1
                    if stop is not None and index >= stop:
                        return
                    current = {"__key__": key}
                if ext in current:
                    raise ShardError(url, key, f"file {name!r} appears twice")
                current[ext] = data
    except (TarFormatError, OSError, UnicodeDecodeError) as exn:
        where = f"at sample {current['__key__']!r}" if current else "before the first sample"
        raise ShardError(url, None, f"corrupt or truncated tar {where} ({exn})") from None
    if current is not None and index >= skip:
        yield current
    if stop is not None and index + 1 < stop:
        raise ShardError(url, None, f"ends after {index + 1} samples, manifest needs at least {stop}; "
                                    f"the shard is truncated")


@functools.cache
def torchvision_png() -> Callable[[bytes], torch.Tensor] | None:
    """The fast PNG -> uint8 (3, H, W) decoder, or None without torchvision's image extension."""
    # libpng through torchvision decodes a small PNG ~2.5x faster than PIL: the loader's hot
    # path. Imported on first use (it adds ~3 s to start-up). torchvision 0.29 deprecates its
    # Python wrapper in favour of torchcodec (not among the pinned dependencies); the wrapper
    # warns and logs on every call, a third of the cost of a 32x32 decode, so the registered
    # op it forwards to is called directly when present.
    try:
        from torchvision.io import ImageReadMode, decode_png
    except ImportError:
        return None
    rgb = ImageReadMode.RGB.value
    op = getattr(getattr(torch.ops, "image", None), "decode_png", None)
    if op is not None:
        return lambda data: op(torch.frombuffer(bytearray(data), dtype=torch.uint8), rgb, False)
    warnings.filterwarnings("ignore", message="The image decoding and encoding capabilities of TorchVision",
                            category=DeprecationWarning)
    return lambda data: decode_png(torch.frombuffer(bytearray(data), dtype=torch.uint8), mode=ImageReadMode.RGB)


def decode_png_rgb(data: bytes) -> torch.Tensor:
    """PNG bytes -> uint8 (3, H, W) RGB tensor (grey replicated, alpha dropped)."""
    fast = torchvision_png()
    if fast is not None:
        return fast(data)
    with Image.open(io.BytesIO(data)) as image:
        if image.format != "PNG":
            raise ValueError(f"not a PNG but {image.format}")
        return torch.from_numpy(np.array(image.convert("RGB"))).permute(2, 0, 1).contiguous()


def decode_sample(raw: RawSample, shard: str, *, image_size: int | None) -> tuple[torch.Tensor, int, str]:
    """(uint8 (3, H, W) image, label, caption) of one raw sample.

    Raises:
        ShardError: a missing ``png``/``cls``/``txt`` entry, an undecodable PNG, a wrong size,
            or a label that is not an integer.
    """
    key = raw.get("__key__")
    for ext in ("png", "cls", "txt"):
        if ext not in raw:
            raise ShardError(shard, key, f"missing {key}.{ext} (has {sorted(k for k in raw if k != '__key__')})")
    try:
        image = decode_png_rgb(raw["png"])
    except (RuntimeError, ValueError, OSError, SyntaxError) as exn:
        raise ShardError(shard, key, f"undecodable PNG ({str(exn).splitlines()[0]})") from None
    if image_size is not None and tuple(image.shape[1:]) != (image_size, image_size):
        raise ShardError(shard, key, f"image is {tuple(image.shape[1:])}, manifest says {image_size}x{image_size}")
    try:
        label = int(raw["cls"])
    except ValueError:
        raise ShardError(shard, key, f"label {raw['cls'][:20]!r} is not an integer") from None
    try:
        caption = raw["txt"].decode("utf-8")
    except UnicodeDecodeError:
        raise ShardError(shard, key, "caption is not UTF-8") from None
    return image, label, caption
