"""Shared fixtures: a real local Ray cluster, the repo root, subprocess helpers."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def ray_cluster():
    """A real local Ray cluster (2 CPUs) shared by the whole session."""
    import ray

    from platform.cluster import ray_init

    os.environ.pop("RAY_ADDRESS", None)  # never join a user's cluster from tests
    ray_init(num_cpus=2, object_store_memory=300 * 1024**2)
    yield ray
    ray.shutdown()


def run_module(*args: str, timeout: float = 300, env: dict | None = None) -> subprocess.CompletedProcess:
    """``python -m ARGS`` from the repo root, as a user would type it."""
    return subprocess.run(
        [sys.executable, "-m", *args],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "HYDRA_FULL_ERROR": "0", **(env or {})},
    )
