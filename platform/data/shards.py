"""Deterministic, atomic webdataset shard writer (used by ``build`` and by the latent cache).

Usage::

    with ShardWriter(out_dir, name="fmnist-latents", split="train", image_size=8, mode="latent",
                     class_names=names, keys=("cls", "npy")) as writer:
        for key, z, y in ...:
            writer.write({"__key__": key, "npy": z_bytes, "cls": str(y)})
    manifest = writer.manifest  # also written to out_dir/manifest.json

Each sample is a dict: ``__key__`` (no dots: webdataset splits keys at the first dot) and
one ``bytes``/``str``/``int`` value per extension. Tar members carry fixed mtime, owner and
mode and are ordered by extension, so the same samples always give byte-identical shards
and therefore the same dataset id. A shard is written as ``NAME.tar.tmp`` and renamed
when complete; ``manifest.json`` is written last, also by rename, so an interrupted build
leaves neither a shard that looks complete nor a manifest.
"""

from __future__ import annotations

import hashlib
import io
import os
import tarfile
from pathlib import Path
from typing import Any, Mapping, Sequence

from platform.data.manifest import (
    MANIFEST_NAME,
    DataError,
    Manifest,
    ShardInfo,
    compute_dataset_id,
    write_manifest,
)

SHARD_PATTERN = "shard-{index:05d}.tar"


def _to_bytes(key: str, ext: str, value: Any) -> bytes:
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode("utf-8")
    if isinstance(value, int):
        return str(value).encode("ascii")
    raise DataError(f"sample {key!r}: value for {ext!r} is {type(value).__name__}; give bytes, str or int")


def _member(name: str, size: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size = size
    info.mtime = 0  # fixed metadata: byte-identical rebuilds
    info.mode = 0o644
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info


class ShardWriter:
    """Writes samples into ``shard-00000.tar``, ``shard-00001.tar``, ... plus ``manifest.json``.

    Args:
        out_dir: created if missing. A previous build there is replaced: its manifest is
            removed first, stale shards after the new manifest is written.
        name, split, class_names, image_size, mode, options, extra: copied into the manifest.
        keys: extensions every sample must carry (checked on ``write``).
        samples_per_shard: shard size; the last shard may be smaller.
    """

    def __init__(
        self,
        out_dir: str | os.PathLike,
        *,
        name: str,
        split: str,
        image_size: int,
        mode: str = "RGB",
        class_names: Sequence[str] = (),
        keys: Sequence[str] = ("cls", "png", "txt"),
        samples_per_shard: int = 1000,
        options: Mapping[str, Any] | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> None:
        if samples_per_shard < 1:
            raise ValueError(f"samples_per_shard must be >= 1, got {samples_per_shard}")
        self.out_dir = Path(out_dir)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        (self.out_dir / MANIFEST_NAME).unlink(missing_ok=True)
        self._meta = dict(name=name, split=split, image_size=int(image_size), mode=mode,
                          class_names=tuple(class_names), keys=tuple(sorted(keys)),
                          options=dict(options or {}), extra=dict(extra or {}))
        self.samples_per_shard = samples_per_shard
        self.shards: list[ShardInfo] = []
        self.manifest: Manifest | None = None
        self._tar: tarfile.TarFile | None = None
        self._file = None
        self._count = 0
        self._seen_keys: set[str] = set()

    @property
    def num_samples(self) -> int:
        return sum(s.count for s in self.shards) + self._count

    def write(self, sample: Mapping[str, Any]) -> None:
        """Append one sample (``__key__`` plus one value per extension in ``keys``)."""
        key = sample.get("__key__")
        if not isinstance(key, str) or not key or "." in key:
            raise DataError(f"sample key {key!r}: need a non-empty str without dots")
        if key in self._seen_keys:
            raise DataError(f"sample key {key!r} written twice; keys must be unique")
        exts = sorted(k for k in sample if k != "__key__")
        if tuple(exts) != self._meta["keys"]:
            raise DataError(f"sample {key!r} has extensions {exts}; this writer expects {list(self._meta['keys'])}")
        self._seen_keys.add(key)
        if self._tar is None:
            self._open_shard()
        for ext in exts:
            data = _to_bytes(key, ext, sample[ext])
            self._tar.addfile(_member(f"{key}.{ext}", len(data)), io.BytesIO(data))
        self._count += 1
        if self._count >= self.samples_per_shard:
            self._close_shard()

    def close(self) -> Manifest:
        """Finish the last shard, write ``manifest.json``, remove stale shards; returns the manifest."""
        if self.manifest is not None:
            return self.manifest
        if self._tar is not None:
            self._close_shard()
        meta = self._meta
        dataset_id = compute_dataset_id(shards=self.shards, class_names=meta["class_names"],
                                        image_size=meta["image_size"], mode=meta["mode"], keys=meta["keys"])
        self.manifest = Manifest(dataset_id=dataset_id, num_samples=self.num_samples, shards=tuple(self.shards), **meta)
        write_manifest(self.out_dir, self.manifest)
        keep = {s.name for s in self.shards}
        for path in self.out_dir.glob("shard-*.tar*"):
            if path.name not in keep:
                path.unlink()
        return self.manifest

    def abort(self) -> None:
        """Drop the shard in progress (its ``.tmp`` file); completed shards stay but no manifest is written."""
        if self._tar is not None:
            self._tar.close()
            self._file.close()
            Path(self._file.name).unlink(missing_ok=True)
            self._tar = None

    def __enter__(self) -> "ShardWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()

    def _open_shard(self) -> None:
        name = SHARD_PATTERN.format(index=len(self.shards))
        self._file = open(self.out_dir / (name + ".tmp"), "wb")
        self._tar = tarfile.open(fileobj=self._file, mode="w", format=tarfile.USTAR_FORMAT)
        self._count = 0

    def _close_shard(self) -> None:
        self._tar.close()
        self._file.close()
        tmp = Path(self._file.name)
        final = tmp.with_name(tmp.name[: -len(".tmp")])
        digest, size = sha256_file(tmp)
        os.replace(tmp, final)
        self.shards.append(ShardInfo(name=final.name, count=self._count, sha256=digest, bytes=size))
        self._tar = None
        self._count = 0


def sha256_file(path: str | os.PathLike) -> tuple[str, int]:
    """(hex sha256, size in bytes) of a file, read in 1 MiB chunks."""
    hasher = hashlib.sha256()
    size = 0
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            hasher.update(chunk)
            size += len(chunk)
    return hasher.hexdigest(), size
