"""Content hashes shared by checkpoints, stage keys and evaluation identities.

One canonical JSON form (sorted keys, no whitespace) so the same value always hashes
the same, whichever process or Python version computed it.
"""

from __future__ import annotations

import hashlib
import json
import os
from typing import Any

_CHUNK = 1 << 20


def canonical_json(payload: Any) -> str:
    """``payload`` as sorted, whitespace-free JSON; non-JSON leaves become ``str``."""
    return json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str)


def sha256_json(payload: Any) -> str:
    """Full sha256 hex of ``canonical_json(payload)``."""
    return hashlib.sha256(canonical_json(payload).encode()).hexdigest()


def sha256_file(path: str | os.PathLike) -> str:
    """sha256 hex of a file's bytes, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()
