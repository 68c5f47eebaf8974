"""Latent cache: encode the image shards once through the frozen first stage (``ldm.latent_cache``).

The first stage is frozen during LDM training, so E(x) is the same every epoch; the
cache stores the unscaled z (KL: posterior mode) with label and caption as webdataset
shards (``platform.data.shards.ShardWriter``, ``mode="latent"``). A cache lives at
``<cache_root>/<key>/`` with key = hash(first-stage fingerprint, dataset id, low-res
factor for concat conditioning): it is reused by every run that would compute the same
latents and rebuilt by none. It is written under a temporary name and renamed when
complete, so a crash never leaves a cache that looks finished.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import tarfile
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch
from torch import nn

from platform.distributed import barrier, is_main
from platform.ldm.conditioning import low_resolution
from platform.orchestration.records import stage_lock

LATENT_EXT = "npy"  # unscaled z, float32 (c, h, w)
LOWRES_EXT = "low.npy"  # concat conditioning: image at resolution / sr_factor, float32 (3, H/s, W/s)


def module_fingerprint(module: nn.Module | None) -> str:
    """sha256 prefix over a module's state dict (names, shapes, bytes): a content id."""
    if module is None:
        return "identity"
    hasher = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        value = tensor.detach().to("cpu").contiguous()
        hasher.update(f"{name}:{tuple(value.shape)}:{value.dtype}".encode())
        hasher.update(value.view(torch.uint8).numpy().tobytes() if value.numel() else b"")
    return hasher.hexdigest()[:16]


def cache_key(first_stage_id: str, dataset_id: str, resolution: int, sr_factor: int | None = None) -> str:
    """The cache directory name for latents of ``dataset_id`` at ``resolution`` px under
    first stage ``first_stage_id``."""
    text = json.dumps({"first_stage": first_stage_id, "dataset": dataset_id, "resolution": resolution,
                       "sr_factor": sr_factor})
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _npy(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return buffer.getvalue()


@torch.no_grad()
def build_latent_cache(
    first_stage: nn.Module,
    shards_dir: str | os.PathLike,
    cache_root: str | os.PathLike,
    *,
    batch_size: int,
    resolution: int,
    device: torch.device | str = "cpu",
    sr_factor: int | None = None,
    samples_per_shard: int = 1000,
) -> Path:
    """Encode every sample of ``shards_dir`` once; returns the cache directory (reused if present).

    In a process group only rank 0 encodes; the others wait at a barrier.

    Args:
        first_stage: frozen ``FirstStage`` (``encode`` -> unscaled z).
        shards_dir: image shards with ``manifest.json``.
        cache_root: parent directory of all latent caches.
        resolution: images are encoded at this size (``data.resolution``), resized exactly as
            training batches are, so cached latents have the shape the LDM samples.
        sr_factor: also store the low-resolution image (concat conditioning).
    """
    from platform.data.manifest import load_manifest

    manifest = load_manifest(shards_dir)
    key = cache_key(module_fingerprint(first_stage), manifest.dataset_id, resolution, sr_factor)
    final = Path(cache_root) / key
    if is_main() and not (final / "manifest.json").is_file():
        # Two LDMs over the same first stage may get here together: the sweep's stage lock
        # (on a directory of its own) lets one build while the other waits, then reuses it.
        with stage_lock(Path(cache_root) / ".locks" / key):
            if not (final / "manifest.json").is_file():
                _encode_into(final, first_stage, shards_dir, manifest, key, batch_size=batch_size, device=device,
                             resolution=resolution, sr_factor=sr_factor, samples_per_shard=samples_per_shard)
    barrier()
    return final


def _encode_into(final: Path, first_stage: nn.Module, shards_dir: str | os.PathLike, manifest: Any, key: str, *,
                 batch_size: int, device: torch.device | str, resolution: int, sr_factor: int | None,
                 samples_per_shard: int) -> None:
    """Encode the shards into a temporary directory, then move it to ``final`` atomically."""
    from platform.data.loader import make_loader
    from platform.data.shards import ShardWriter

    tmp = final.parent / f".tmp-{key}-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    keys = ("cls", LATENT_EXT, "txt") + ((LOWRES_EXT,) if sr_factor else ())
    loader = make_loader(str(shards_dir), batch_size=batch_size, shuffle=False, drop_last=False,
                         resolution=resolution)
    with ShardWriter(
        tmp, name=f"{manifest.name}-latents", split=manifest.split, image_size=resolution,
        mode="latent", class_names=manifest.class_names, keys=keys, samples_per_shard=samples_per_shard,
        extra={"source_dataset_id": manifest.dataset_id, "first_stage": module_fingerprint(first_stage),
               "resolution": resolution, "sr_factor": sr_factor},
    ) as writer:
        for batch in loader:
            image = batch["image"].to(device, torch.float32)  # (B, 3, H, W)
            z = first_stage.encode(image).float().cpu().numpy()  # (B, c, h, w), unscaled
            low = low_resolution(image, sr_factor).cpu().numpy() if sr_factor else None
            for i, sample_key in enumerate(batch["key"]):
                sample = {"__key__": sample_key, "cls": int(batch["label"][i]), LATENT_EXT: _npy(z[i]),
                          "txt": batch["caption"][i]}
                if low is not None:
                    sample[LOWRES_EXT] = _npy(low[i])
                writer.write(sample)
    shutil.rmtree(final, ignore_errors=True)
    os.replace(tmp, final)


def _read_shard(path: Path) -> list[dict[str, Any]]:
    """All samples of one latent tar shard, in order."""
    samples: dict[str, dict[str, Any]] = {}
    with tarfile.open(path) as tar:
        for member in tar:
            key, ext = member.name.split(".", 1)
            data = tar.extractfile(member).read()
            sample = samples.setdefault(key, {"key": key})
            if ext.endswith("npy"):
                sample[ext] = np.load(io.BytesIO(data), allow_pickle=False)
            elif ext == "cls":
                sample["label"] = int(data)
            elif ext == "txt":
                sample["caption"] = data.decode("utf-8")
    return list(samples.values())


def _collate(samples: list[dict[str, Any]]) -> dict[str, Any]:
    batch = {
        "latent": torch.from_numpy(np.stack([s[LATENT_EXT] for s in samples])),  # (B, c, h, w)
        "label": torch.tensor([s["label"] for s in samples]),
        "caption": [s["caption"] for s in samples],
        "key": [s["key"] for s in samples],
    }
    if LOWRES_EXT in samples[0]:
        batch["lowres"] = torch.from_numpy(np.stack([s[LOWRES_EXT] for s in samples]))
    return batch


def iterate_latents(
    cache_dir: str | os.PathLike,
    *,
    batch_size: int,
    rank: int = 0,
    world_size: int = 1,
    seed: int = 0,
    epoch: int = 0,
    shuffle: bool = True,
    drop_last: bool = True,
    skip_batches: int = 0,
) -> Iterator[dict[str, Any]]:
    """One epoch of cached batches: ``latent`` (B, c, h, w) unscaled, ``label``, ``caption``, ``key``.

    Shard order and the order inside each shard are permuted by (seed, epoch); rank r
    takes every ``world_size``-th sample of that stream. ``skip_batches`` resumes
    mid-epoch (the order is a function of (seed, epoch) only).
    """
    from platform.data.manifest import load_manifest

    manifest = load_manifest(cache_dir)
    rng = np.random.default_rng([seed, epoch])
    order = rng.permutation(len(manifest.shards)) if shuffle else np.arange(len(manifest.shards))
    pending: list[dict[str, Any]] = []
    position = 0  # index in the global stream
    emitted = 0
    for shard_index in order:
        samples = _read_shard(Path(cache_dir) / manifest.shards[shard_index].name)
        if shuffle:
            samples = [samples[i] for i in rng.permutation(len(samples))]
        for sample in samples:
            position += 1
            if (position - 1) % world_size != rank:
                continue
            pending.append(sample)
            if len(pending) == batch_size:
                if emitted >= skip_batches:
                    yield _collate(pending)
                emitted += 1
                pending = []
    if pending and not drop_last and emitted >= skip_batches:
        yield _collate(pending)
