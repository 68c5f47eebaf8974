"""Cached reference statistics, keyed by what they are computed from.

Key: the source's content key (dataset id, split, resolution for shards), the number of
images N and the detector hash. Entries are written atomically with their sha256 beside
them, so a crashed or concurrent writer never leaves a half file that a later run trusts.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Optional

import torch

from evaluation.assets import atomic_write, cache_dir, save_torch, sha256_file
from evaluation.stats import FeatureStats

log = logging.getLogger(__name__)


def reference_key(source_key: str, num_samples: int, detector_hash: str) -> str:
    return f"{source_key}-n{num_samples}-{detector_hash}"


class ReferenceCache:
    """Directory of ``<key>.pt`` statistics (default: ``<evaluation cache>/references``)."""

    def __init__(self, directory: Optional[str | Path] = None) -> None:
        self.directory = Path(directory) if directory is not None else cache_dir() / "references"

    def path(self, key: str) -> Path:
        return self.directory / f"{key}.pt"

    def load(self, key: str, *, need_features: bool) -> Optional[FeatureStats]:
        """Cached statistics, or None on a miss (absent, corrupt, or without needed raw features)."""
        path, meta = self.path(key), self.path(key).with_suffix(".json")
        if not (path.is_file() and meta.is_file()):
            log.info("reference cache miss: %s", key)
            return None
        if sha256_file(path) != json.loads(meta.read_text()).get("sha256"):
            log.warning("reference cache entry %s fails its sha256 check; recomputing", path)
            return None
        stats = FeatureStats.from_dict(torch.load(path, map_location="cpu", weights_only=True))
        if need_features and not stats.keep_features:
            log.info("reference cache entry %s has no raw features (KID/PR need them); recomputing", key)
            return None
        log.info("reference cache hit: %s", key)
        return stats

    def save(self, key: str, stats: FeatureStats) -> Path:
        path = self.path(key)
        save_torch(path, stats.to_dict())
        record = {"key": key, "sha256": sha256_file(path), "count": stats.count, "features": stats.keep_features}
        atomic_write(path.with_suffix(".json"), lambda tmp: tmp.write_text(json.dumps(record, indent=2)))
        return path
