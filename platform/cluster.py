"""Connect to (or start) the Ray cluster that runs the stages, and check its workers.

Ray workers import the stdlib ``platform`` before they add the driver's directory, so
code under ``platform/`` would not deserialize there. Shipping the repo as the job's
``working_dir`` puts it first on every worker's path, locally and on remote clusters
alike (outputs therefore always use absolute paths).

Which cluster: an explicit address (``cluster.address``, else ``RAY_ADDRESS``, which Ray
Jobs sets for the driver it runs) joins that cluster; with none the sweep always starts
its own local cluster. Plain ``ray.init()`` would instead join whatever ``ray start``
cluster was last started on the machine (DESIGN.md §6), where the sweep's resource
settings then make it fail or, worse, it runs on someone else's cluster.
"""

from __future__ import annotations

import os
import socket
import sys
from pathlib import Path
from typing import Any, Callable, Mapping, Optional

import ray

from platform.config.validate import is_local_store

REPO_ROOT = Path(__file__).resolve().parents[1]
# Run outputs, data and the venv stay behind; only code and configs travel. Patterns
# follow .gitignore rules: anchor top-level folders with "/" so that "data" does not
# also drop platform/data/.
_EXCLUDES = ["/.venv", "/.git", "/data", "/runs", "/multirun", "/outputs", "/mlruns", "*.db", "__pycache__"]
# Ray retries a task killed by its memory monitor without limit by default; one retry
# (the node may have been busy with other stages), then the trial fails and says why.
# Read by every process that owns tasks: the driver and the workers.
_WORKER_ENV = {"RAY_USAGE_STATS_ENABLED": "0", "MLFLOW_DISABLE_TELEMETRY": "true", "RAY_task_oom_retries": "1"}
# Settings (not secrets) that must be the same in the driver and every worker.
_SHARED_SETTINGS = ("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "MLFLOW_HTTP_REQUEST_TIMEOUT",
                    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "MLFLOW_HTTP_REQUEST_BACKOFF_JITTER")
# Credentials that tracking and storage clients read from the environment (MLflow's
# HTTP auth and TLS, its S3/GCS/Azure artifact stores, fsspec and webdataset URLs).
_CREDENTIAL_NAMES = frozenset({
    "MLFLOW_TRACKING_TOKEN", "MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD",
    "MLFLOW_TRACKING_INSECURE_TLS", "MLFLOW_TRACKING_SERVER_CERT_PATH", "MLFLOW_TRACKING_CLIENT_CERT_PATH",
    "MLFLOW_S3_ENDPOINT_URL", "MLFLOW_S3_IGNORE_TLS", "GOOGLE_APPLICATION_CREDENTIALS",
    "GOOGLE_CLOUD_PROJECT", "AZURE_CLIENT_ID", "AZURE_CLIENT_SECRET", "AZURE_TENANT_ID", "HF_TOKEN",
})
_CREDENTIAL_PREFIXES = ("AWS_", "AZURE_STORAGE_")

def joined_address(address: Optional[str]) -> Optional[str]:
    """The cluster the sweep will join: ``address``, else ``RAY_ADDRESS``; None = start one."""
    return address or os.environ.get("RAY_ADDRESS") or None


def check_cluster_store(address: Optional[str], tracking_uri: Optional[str]) -> None:
    """Refuse a Ray client (``ray://``) driving a store that is a file on this machine.

    The writer actor runs on the cluster; a SQLite path resolved here would name a file
    on the head node (or nowhere). A driver on a cluster node (a GCS address, or a Ray
    Job's driver) shares its node with the writer, so a file store works there. The
    explicit ``cluster.address`` case is refused earlier, by config validation.
    Raises ``ValueError`` naming the address and what to do.
    """
    if address and address.startswith("ray://") and is_local_store(tracking_uri):
        raise ValueError(
            f"RAY_ADDRESS={address} is a Ray client connection, but the tracking store "
            f"{tracking_uri or '(default SQLite under paths.work_dir)'} is a file on this machine "
            "that the cluster's writer cannot reach; run `mlflow server` where every node reaches "
            "it and pass tracking=server tracking.uri=http://HOST:PORT")


def credential_env(environ: Mapping[str, str] = os.environ) -> dict[str, str]:
    """The tracking/storage credentials set in ``environ`` (names above), to give workers."""
    return {name: value for name, value in environ.items()
            if value and (name in _CREDENTIAL_NAMES or name.startswith(_CREDENTIAL_PREFIXES))}


def _setup_hook(secrets: dict[str, str]) -> Callable[[], None]:
    """A worker start-up hook that puts ``secrets`` into each worker's environment.

    Ray pickles the hook into its internal key-value store and runs it in every worker
    process of the job, Ray Train workers and actors included. Secrets passed as
    ``runtime_env["env_vars"]`` would instead be written as text into Ray's logs
    (runtime_env_agent.log) and shown in the dashboard.
    """
    def apply_secrets() -> None:
        os.environ.update(secrets)

    return apply_secrets


def ray_init(
    address: Optional[str] = None,
    *,
    num_cpus: Optional[int] = None,
    num_gpus: Optional[int] = None,
    object_store_memory: Optional[int] = None,
    log_to_driver: bool = True,
) -> None:
    """Join ``address`` (else ``RAY_ADDRESS``), or start a new local cluster; no-op if connected.

    Args:
        address: a GCS address (``HOST:6379``) or a Ray client address (``ray://HOST:10001``).
        num_cpus, num_gpus, object_store_memory: size the local cluster; they cannot
            resize an existing cluster, so they must be None when an address is given.
        log_to_driver: False keeps the workers' output in their logs, off this process's screen.
    Raises:
        ValueError: resources given together with an address.
    """
    if ray.is_initialized():
        return
    os.environ.update(_WORKER_ENV)
    env_vars = {**_WORKER_ENV, **{k: os.environ[k] for k in _SHARED_SETTINGS if k in os.environ}}
    runtime_env: dict[str, Any] = {"working_dir": str(REPO_ROOT), "excludes": _EXCLUDES, "env_vars": env_vars}
    secrets = credential_env()
    if secrets:
        runtime_env["worker_process_setup_hook"] = _setup_hook(secrets)
    address = joined_address(address)
    if address:
        sized = {"num_cpus": num_cpus, "num_gpus": num_gpus, "object_store_memory": object_store_memory}
        given = [f"cluster.{name}={value}" for name, value in sized.items() if value is not None]
        if given:
            raise ValueError(f"{', '.join(given)} sizes a local cluster, but the sweep joins the existing "
                             f"cluster at {address}, which has its own resources; drop these settings")
        print(f"joining the Ray cluster at {address}", flush=True)
        if "RAY_JOB_CONFIG_JSON_ENV_VAR" in os.environ:
            # A Ray Job's driver (`ray job submit`): Ray refuses a runtime_env that sets the
            # same fields as the job's (its working_dir is this repo already) unless told
            # to combine them, ours winning: the workers then get our env vars and hook.
            os.environ.setdefault("RAY_OVERRIDE_JOB_RUNTIME_ENV", "1")
        ray.init(address=address, runtime_env=runtime_env, log_to_driver=log_to_driver)
    else:
        ray.init(
            address="local",  # never join a `ray start` cluster found on the machine
            num_cpus=num_cpus,
            num_gpus=num_gpus,
            object_store_memory=object_store_memory,
            runtime_env=runtime_env,
            include_dashboard=False,
            log_to_driver=log_to_driver,
            _system_config={"task_oom_retries": int(_WORKER_ENV["RAY_task_oom_retries"])},
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
