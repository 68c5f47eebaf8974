"""Pixel operations of the build: fit to a square size, grey to RGB, PNG encoding, captions."""

from __future__ import annotations

import io
from typing import Literal

import numpy as np
from PIL import Image

Fit = Literal["pad", "resize", "crop"]
FITS: tuple[str, ...] = ("pad", "resize", "crop")


def to_uint8(image: np.ndarray) -> np.ndarray:
    """(H, W) or (H, W, 3|4) array -> uint8 (H, W, 3): grey replicated, alpha dropped."""
    if image.dtype != np.uint8:
        raise ValueError(f"expected uint8 pixels, got {image.dtype}")
    if image.ndim == 2:
        return np.repeat(image[:, :, None], 3, axis=2)
    if image.ndim == 3 and image.shape[2] in (3, 4):
        return np.ascontiguousarray(image[:, :, :3])
    raise ValueError(f"expected (H, W) or (H, W, 3) pixels, got shape {image.shape}")


def _resize(image: np.ndarray, size: int) -> np.ndarray:
    h, w = image.shape[:2]
    # Integer upscaling by nearest neighbour is exact (8x8 digits -> 32x32 keeps every pixel);
    # anything else is resampled with an antialiasing filter.
    exact = size % h == 0 and size % w == 0 and h == w
    resample = Image.NEAREST if exact else Image.BICUBIC
    return np.asarray(Image.fromarray(image).resize((size, size), resample=resample))


def fit_image(image: np.ndarray, size: int, fit: Fit) -> np.ndarray:
    """Bring a uint8 image to (size, size, 3).

    Args:
        image: uint8 (H, W) grey or (H, W, 3) RGB.
        fit: ``pad`` centres it on black (every source pixel kept; H, W must be <= size);
            ``resize`` stretches to the square; ``crop`` takes the central square, then resizes.
    """
    rgb = to_uint8(image)
    h, w = rgb.shape[:2]
    if fit == "pad":
        if h > size or w > size:
            raise ValueError(f"cannot pad a {h}x{w} image to {size}x{size}; use --fit resize or crop")
        out = np.zeros((size, size, 3), dtype=np.uint8)
        top, left = (size - h) // 2, (size - w) // 2
        out[top : top + h, left : left + w] = rgb
        return out
    if fit == "crop":
        side = min(h, w)
        top, left = (h - side) // 2, (w - side) // 2
        rgb = np.ascontiguousarray(rgb[top : top + side, left : left + side])
    elif fit != "resize":
        raise ValueError(f"fit must be one of {FITS}, got {fit!r}")
    if rgb.shape[:2] == (size, size):
        return rgb
    return _resize(rgb, size)


def encode_png(image: np.ndarray) -> bytes:
    """Lossless PNG bytes of a uint8 (H, W, 3) image (deterministic for a given zlib)."""
    buffer = io.BytesIO()
    Image.fromarray(image, mode="RGB").save(buffer, format="PNG", compress_level=6)
    return buffer.getvalue()


def caption_for(class_name: str) -> str:
    """Short caption from a class name: ``Sneaker`` -> ``a photo of a sneaker``."""
    noun = class_name.replace("_", " ").strip().lower()
    article = "an" if noun[:1] in "aeiou" else "a"
    return f"a photo of {article} {noun}"
