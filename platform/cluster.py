"""Connect to (or start) the Ray cluster that runs the stages, and check its workers.

Ray workers import the stdlib ``platform`` before they add the driver's directory, so
code under ``platform/`` would not deserialize there. Shipping the repo as the job's
``working_dir`` puts it first on every worker's path, locally and on remote clusters
alike (outputs therefore always use absolute paths).
"""

from __future__ import annotations

import os
import socket
import sys
from pathlib import Path
from typing import Any, Optional

import ray

REPO_ROOT = Path(__file__).resolve().parents[1]
# Run outputs, data and the venv stay behind; only code and configs travel. Patterns
# follow .gitignore rules: anchor top-level folders with "/" so that "data" does not
# also drop platform/data/.
_EXCLUDES = ["/.venv", "/.git", "/data", "/runs", "/multirun", "/outputs", "/mlruns", "*.db", "__pycache__"]
_WORKER_ENV = {"RAY_USAGE_STATS_ENABLED": "0", "MLFLOW_DISABLE_TELEMETRY": "true"}


def ray_init(
    address: Optional[str] = None,
    *,
    num_cpus: Optional[int] = None,
    num_gpus: Optional[int] = None,
    object_store_memory: Optional[int] = None,
) -> None:
    """Join ``address`` (else ``RAY_ADDRESS``), or start a local cluster; no-op if connected."""
    if ray.is_initialized():
        return
    os.environ.update(_WORKER_ENV)
    runtime_env = {"working_dir": str(REPO_ROOT), "excludes": _EXCLUDES, "env_vars": _WORKER_ENV}
    address = address or os.environ.get("RAY_ADDRESS")
    if address:
        ray.init(address=address, runtime_env=runtime_env, log_to_driver=True)
    else:
        ray.init(
            num_cpus=num_cpus,
            num_gpus=num_gpus,
            object_store_memory=object_store_memory,
            runtime_env=runtime_env,
            include_dashboard=False,
            log_to_driver=True,
        )


@ray.remote(num_cpus=0)
def _worker_report() -> dict[str, Any]:
    import platform

    return {
        "host": socket.gethostname(),
        "python": sys.version.split()[0],
        "platform_package": getattr(platform, "__file__", None),
        "cwd": os.getcwd(),
    }


def check_workers() -> dict[str, Any]:
    """Run one task on the cluster and fail early if it cannot import this project.

    Returns the worker's report (host, python, where ``platform`` came from).
    """
    report = ray.get(_worker_report.remote())
    package = report["platform_package"] or ""
    if not package.endswith(os.path.join("platform", "__init__.py")):
        raise RuntimeError(
            f"Ray workers on {report['host']} import the standard library's 'platform' "
            f"({package or 'built-in'}), not this project; start the cluster with this "
            "repo's runtime_env (platform.cluster.ray_init) or put the repo first on PYTHONPATH"
        )
    return report
