"""``manifest.json``: what a shard directory holds, and a content-derived dataset id.

The manifest is the only index of a shard directory: loaders open the shards it lists
(never a glob), so leftover temporary files from an interrupted build are invisible.
It holds no timestamps or paths, so two builds of the same input are byte-identical.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from platform.data.locations import is_url, join, open_url

MANIFEST_NAME = "manifest.json"
FORMAT_VERSION = 1


class DataError(RuntimeError):
    """A shard directory, shard or sample is missing or malformed (the message says which)."""


@dataclass(frozen=True)
class ShardInfo:
    """One tar shard: file name (relative to the directory), sample count, sha256 of the bytes."""

    name: str
    count: int
    sha256: str
    bytes: int = 0


@dataclass(frozen=True)
class Manifest:
    """Index of a shard directory.

    Attributes:
        dataset_id: sha256 prefix over the content (shard hashes, counts, classes, size, mode).
        name: dataset name, e.g. ``fashion-mnist``.
        split: ``train`` / ``test`` / free text for image folders.
        num_samples: total samples over all shards.
        shards: in manifest order; sample ``i`` of the dataset is the ``i``-th across them.
        class_names: label ``k`` is ``class_names[k]``.
        image_size: side length in pixels of every (square) image; latent caches use it for z.
        mode: ``RGB`` for images; writers of other payloads name theirs (e.g. ``latent``).
        keys: file extensions every sample carries (``cls``, ``png``, ``txt`` for images).
        options: the build options that produced the shards.
        extra: free-form metadata from other writers (e.g. first-stage id of a latent cache).
    """

    dataset_id: str
    name: str
    split: str
    num_samples: int
    shards: tuple[ShardInfo, ...]
    class_names: tuple[str, ...]
    image_size: int
    mode: str
    keys: tuple[str, ...] = ("cls", "png", "txt")
    options: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)
    format_version: int = FORMAT_VERSION

    @property
    def offsets(self) -> list[int]:
        """Index of each shard's first sample (length ``len(shards) + 1``; last = num_samples)."""
        out = [0]
        for shard in self.shards:
            out.append(out[-1] + shard.count)
        return out

    def to_json(self) -> str:
        data = asdict(self)
        return json.dumps(data, indent=2, sort_keys=True) + "\n"


def compute_dataset_id(
    *, shards: list[ShardInfo] | tuple[ShardInfo, ...], class_names: list[str] | tuple[str, ...],
    image_size: int, mode: str, keys: list[str] | tuple[str, ...],
) -> str:
    """A 16-hex-digit id of the content alone: the same samples in the same shards give the same id."""
    content = {
        "shards": [[s.count, s.sha256] for s in shards],
        "class_names": list(class_names),
        "image_size": image_size,
        "mode": mode,
        "keys": list(keys),
    }
    return hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()[:16]


def manifest_from_dict(data: dict[str, Any], *, source: str = "manifest") -> Manifest:
    """Build a ``Manifest`` from its JSON form, naming ``source`` and the field when one is missing."""
    try:
        return Manifest(
            dataset_id=data["dataset_id"],
            name=data["name"],
            split=data["split"],
            num_samples=int(data["num_samples"]),
            shards=tuple(ShardInfo(**s) for s in data["shards"]),
            class_names=tuple(data["class_names"]),
            image_size=int(data["image_size"]),
            mode=data["mode"],
            keys=tuple(data.get("keys", ("cls", "png", "txt"))),
            options=dict(data.get("options", {})),
            extra=dict(data.get("extra", {})),
            format_version=int(data.get("format_version", FORMAT_VERSION)),
        )
    except KeyError as exn:
        raise DataError(f"{source}: missing field {exn.args[0]!r}; rebuild with `python -m platform.data build ...`") from None


def load_manifest(directory: str | os.PathLike) -> Manifest:
    """Read ``DIRECTORY/manifest.json`` (a local directory or an http(s)/s3 URL prefix).

    Raises:
        DataError: no manifest there (with the command that writes one), or it is malformed.
    """
    path = join(directory, MANIFEST_NAME)
    if is_url(directory):
        from platform.redaction import redact_text

        try:
            with open_url(path) as stream:
                text = stream.read().decode()
        except OSError as exn:
            raise DataError(redact_text(f"{path}: cannot read ({exn}); is it a shard directory written by "
                                        f"`python -m platform.data build` and served at that address?")) from None
    else:
        if not Path(path).is_file():
            raise DataError(
                f"{directory}: no {MANIFEST_NAME} (not a shard directory, or its build did not finish); "
                f"write one with `python -m platform.data build SOURCE --out {directory}`"
            )
        text = Path(path).read_text()
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exn:
        raise DataError(f"{path}: not valid JSON ({exn}); rebuild with `python -m platform.data build ...`") from None
    return manifest_from_dict(data, source=path)


def write_manifest(directory: str | os.PathLike, manifest: Manifest) -> Path:
    """Write ``manifest.json`` atomically (temporary name, then rename): it appears complete or not at all."""
    path = Path(directory) / MANIFEST_NAME
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(manifest.to_json())
    os.replace(tmp, path)
    return path
