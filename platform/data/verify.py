"""``verify``: every shard in the manifest exists, hashes right, holds the stated samples, decodes."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from platform.data.manifest import DataError, load_manifest
from platform.data.reader import ShardError, decode_sample, iter_shard
from platform.data.shards import sha256_file


def verify_shards(directory: str | os.PathLike, *, decode: bool = True, progress: bool = False) -> list[str]:
    """Problems found in a local shard directory, one line each naming the shard (and key); [] = sound.

    Checks, per shard: present, sha256 and size as in the manifest, a readable tar with the
    manifest's sample count, every sample carrying the manifest's keys; with ``decode`` also
    that each PNG decodes at ``image_size`` and each label indexes ``class_names``.

    Raises:
        DataError: no (valid) manifest in ``directory``.
    """
    manifest = load_manifest(directory)
    problems: list[str] = []
    total = 0
    for number, shard in enumerate(manifest.shards, 1):
        path = Path(directory) / shard.name
        if not path.is_file():
            problems.append(f"shard {path}: missing (manifest lists it)")
            continue
        digest, size = sha256_file(path)
        if digest != shard.sha256:
            problems.append(f"shard {path}: sha256 {digest[:16]}... differs from manifest "
                            f"{shard.sha256[:16]}... ({size} bytes, manifest says {shard.bytes}); the file was modified")
        count = 0
        try:
            for raw in iter_shard(str(path)):
                count += 1
                key = raw["__key__"]
                missing = [ext for ext in manifest.keys if ext not in raw]
                if missing:
                    problems.append(f"shard {path}, sample {key!r}: missing {', '.join(missing)}")
                    continue
                if decode and manifest.mode == "RGB":
                    try:
                        _, label, _ = decode_sample(raw, str(path), image_size=manifest.image_size)
                    except ShardError as exn:
                        problems.append(f"shard {path}, sample {key!r}: {exn.problem}")
                        continue
                    if manifest.class_names and not 0 <= label < len(manifest.class_names):
                        problems.append(f"shard {path}, sample {key!r}: label {label} outside "
                                        f"{len(manifest.class_names)} classes")
        except ShardError as exn:
            problems.append(f"shard {path}: {exn.problem}")
        if count != shard.count:
            short = "; the file is truncated" if count < shard.count else ""
            problems.append(f"shard {path}: {count} samples, manifest says {shard.count}{short}")
        total += count
        if progress:
            print(f"[verify] {number}/{len(manifest.shards)} shards", file=sys.stderr, flush=True)
    if not problems and total != manifest.num_samples:
        problems.append(f"{directory}: {total} samples in shards, manifest says {manifest.num_samples}")
    return problems


def require_sound(directory: str | os.PathLike) -> None:
    """``verify_shards`` that raises ``DataError`` listing the problems (for build and CI)."""
    problems = verify_shards(directory)
    if problems:
        raise DataError(f"{directory}: {len(problems)} problem(s):\n  " + "\n  ".join(problems))
