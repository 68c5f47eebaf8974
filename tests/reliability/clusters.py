"""Helpers for reliability tests: private Ray clusters and scripts run in fresh processes.

Every cluster here lives in its own temp dir (never /tmp/ray), so no other process on the
machine joins it, and is shut down by the object that started it (``ray stop`` would kill
every Ray process of the user).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path
from typing import Any, Iterator

REPO_ROOT = Path(__file__).resolve().parents[2]


@contextlib.contextmanager
def private_cluster(**head_args: Any) -> Iterator[Any]:
    """A ``ray.cluster_utils.Cluster`` (head only) under a fresh short temp dir.

    Yields the cluster; ``cluster.temp_root`` is the directory to use as ``RAY_TMPDIR``
    (Ray keeps its files in ``<RAY_TMPDIR>/ray``). Unix socket paths must stay short,
    hence ``/tmp`` and a short prefix.
    """
    from ray.cluster_utils import Cluster

    root = tempfile.mkdtemp(prefix="r11-", dir="/tmp")
    # Cluster() records its address in <default temp dir>/ray_current_cluster, as `ray start`
    # does: point the default at our directory so no other process on the machine finds it.
    previous = os.environ.get("RAY_TMPDIR")
    os.environ["RAY_TMPDIR"] = root
    try:
        cluster = Cluster(initialize_head=True, head_node_args={
            "num_cpus": 1, "temp_dir": os.path.join(root, "ray"), "include_dashboard": False, **head_args})
        cluster.temp_root = root
        try:
            yield cluster
        finally:
            cluster.shutdown()
    finally:
        if previous is None:
            os.environ.pop("RAY_TMPDIR", None)
        else:
            os.environ["RAY_TMPDIR"] = previous
        shutil.rmtree(root, ignore_errors=True)


def run_script(code: str, *, env: dict[str, str] | None = None, timeout: float = 180) -> tuple[Any, str]:
    """Run ``code`` in a fresh interpreter from the repo root; it prints one JSON line last.

    Returns (that JSON value, the whole stdout+stderr text).
    """
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], cwd=REPO_ROOT, capture_output=True, text=True,
        timeout=timeout, env={**os.environ, "RAY_USAGE_STATS_ENABLED": "0", **(env or {})})
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1]), output
