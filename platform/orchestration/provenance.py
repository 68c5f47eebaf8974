"""Where a stage result came from: git commit, library versions, host and times.

Stored in every stage record, so a result can be explained without the sweep that made it.
"""

from __future__ import annotations

import functools
import getpass
import importlib.metadata
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[2]
LIBRARIES = ("torch", "diffusers", "numpy", "scipy", "ray", "mlflow", "hydra-core", "torchmetrics", "safetensors")


@functools.lru_cache(maxsize=1)
def git_commit() -> str:
    """``HEAD`` of the checkout this code runs from, ``-dirty`` if it has changes; else "unknown"."""
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO_ROOT,
                               capture_output=True, text=True)
    except OSError:
        return "unknown"
    if out.returncode != 0:
        return "unknown"
    return out.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")


def library_versions() -> dict[str, str]:
    versions = {}
    for name in LIBRARIES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = "absent"
    return versions


def provenance(*, commit: str | None = None) -> dict[str, Any]:
    """Commit (``commit``, else this checkout's), Python and library versions, host and user
    of the process calling it."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return {"commit": commit or git_commit(), "python": sys.version.split()[0], "libraries": library_versions(),
            "host": socket.gethostname(), "user": user}
