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
from typing import Any, Iterator, Sequence

REPO_ROOT = Path(__file__).resolve().parents[2]


@contextlib.contextmanager
def private_cluster(*, worker_nodes: Sequence[dict[str, Any]] = (), **head_args: Any) -> Iterator[Any]:
    """A ``ray.cluster_utils.Cluster`` (a head, plus ``worker_nodes``) under a fresh short temp dir.

    Yields the cluster; ``cluster.temp_root`` is the directory to use as ``RAY_TMPDIR``
    (Ray keeps its files in ``<RAY_TMPDIR>/ray``) and ``cluster.workers`` the added nodes.
    Unix socket paths must stay short, hence ``/tmp`` and a short prefix.
    """
    from ray.cluster_utils import Cluster

    root = tempfile.mkdtemp(prefix="r11-", dir="/tmp")
    # Cluster() records its address in <default temp dir>/ray_current_cluster, as `ray start`
    # does: point the default at our directory so no other process on the machine finds it.
    previous = os.environ.get("RAY_TMPDIR")
    os.environ["RAY_TMPDIR"] = root
    try:
        for attempt in range(3):
            cluster = Cluster()
            try:
                cluster.add_node(**{"num_cpus": 1, "temp_dir": os.path.join(root, "ray"), "include_dashboard": False,
                                    **head_args})
                cluster.workers = [cluster.add_node(**node) for node in worker_nodes]
                break
            except Exception as error:  # noqa: BLE001 - narrowed below
                # Ray gives a raylet a fixed 30 s to register with the GCS, which a loaded
                # 2-core box can exceed: start again from nothing.
                cluster.shutdown()
                kill_cluster(root)
                if "timed out during startup" not in str(error) or attempt == 2:
                    raise
        cluster.temp_root = root
        try:
            yield cluster
        finally:
            cluster.shutdown()
    finally:
        kill_cluster(root)  # anything a failed start or a removed node left behind
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


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class MlflowServer:
    """A real ``mlflow server`` on loopback that a test can stop and restart (same port, same store)."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 120) -> None:
        import socket
        import time

        self.proc = subprocess.Popen(
            [str(Path(sys.executable).parent / "mlflow"), "server", "--host", "127.0.0.1", "--port", str(self.port),
             "--workers", "1", "--backend-store-uri", f"sqlite:///{self.root / 'server.db'}",
             "--artifacts-destination", str(self.root / "server-artifacts")],
            # Not part of any Ray cluster a test started (whose clean-up matches RAY_TMPDIR).
            env={**{k: v for k, v in os.environ.items() if k != "RAY_TMPDIR"},
                 "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"},
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        deadline = time.time() + timeout
        while time.time() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    return
            except OSError:
                time.sleep(0.3)
        raise RuntimeError(f"mlflow server did not listen on {self.url} within {timeout} s")

    def stop(self) -> None:
        import signal

        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(30)
        self.proc = None


def _pids_mentioning(text: str) -> list[int]:
    """Processes whose command line contains ``text`` (a unique temp dir of ours)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if text.encode() in (entry / "cmdline").read_bytes():
                    pids.append(int(entry.name))
            except OSError:
                continue
    return pids


def cluster_pids(root: str) -> list[int]:
    """Every process of the cluster whose ``RAY_TMPDIR`` is ``root``: the environment, not
    the command line, because Ray's agents and workers retitle themselves."""
    needle = f"RAY_TMPDIR={root}".encode()
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            try:
                if needle in (entry / "environ").read_bytes().split(b"\0"):
                    pids.append(int(entry.name))
            except OSError:
                continue
    return pids


def kill_cluster(root: str) -> None:
    """SIGTERM, then SIGKILL, to every process of the cluster under ``root`` (not ``ray stop``,
    which stops every Ray cluster of the user on the machine)."""
    import signal
    import time

    for sig in (signal.SIGTERM, signal.SIGKILL):
        pids = set(cluster_pids(root)) | set(_pids_mentioning(root))
        for pid in pids:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        if pids:
            time.sleep(3)


@contextlib.contextmanager
def ray_start_head(num_cpus: int = 2) -> Iterator[dict[str, str]]:
    """``ray start --head`` with its own temp dir, a dashboard (Ray Jobs) and token auth.

    Yields {"address": GCS address, "dashboard": http URL, "env": env for the Ray CLI}.
    Stopped by killing the processes that carry our temp dir (``kill_cluster``).
    """
    root = tempfile.mkdtemp(prefix="r11j-", dir="/tmp")
    ports: set[int] = set()
    while len(ports) < 7:  # distinct: a port is free again once free_port() has closed it
        ports.add(free_port())
    port, dashboard_port, agent, agent_grpc, metrics, runtime_env_agent, client = sorted(ports)
    env = {**os.environ, "RAY_TMPDIR": root, "RAY_AUTH_MODE": "token", "RAY_USAGE_STATS_ENABLED": "0"}
    env.pop("RAY_ADDRESS", None)
    ray_cli = str(Path(sys.executable).parent / "ray")
    try:  # a `ray start` that fails half-way leaves processes too: the cleanup below ends them
        subprocess.run([ray_cli, "start", "--head", f"--port={port}", f"--num-cpus={num_cpus}",
                        f"--temp-dir={root}/ray", "--dashboard-host=127.0.0.1", f"--dashboard-port={dashboard_port}",
                        "--include-dashboard=true", "--disable-usage-stats",
                        # Fixed default ports would clash with other Ray clusters on the machine:
                        # a head whose dashboard agent cannot bind never accepts a job.
                        f"--dashboard-agent-listen-port={agent}", f"--dashboard-agent-grpc-port={agent_grpc}",
                        f"--metrics-export-port={metrics}", f"--runtime-env-agent-port={runtime_env_agent}",
                        f"--ray-client-server-port={client}"],
                       env=env, check=True, timeout=180)
        yield {"address": f"127.0.0.1:{port}", "dashboard": f"http://127.0.0.1:{dashboard_port}", "root": root,
               "env": {**env, "RAY_API_SERVER_ADDRESS": f"http://127.0.0.1:{dashboard_port}"}}
    finally:
        kill_cluster(root)
        shutil.rmtree(root, ignore_errors=True)


def descendants(pid: int) -> list[int]:
    """All processes below ``pid`` (children, their children, ...), from /proc."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            children.setdefault(int(fields[1]), []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def cmdline(pid: int) -> str:
    try:
        return (Path("/proc") / str(pid) / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def ray_train_workers(root: str) -> list[int]:
    """Ray Train worker processes of the cluster whose temp dir is ``root``: children of its
    raylet (a worker's title replaces its command line, so it no longer names ``root``)."""
    raylets = {pid for pid in _pids_mentioning(root) if "raylet" in cmdline(pid).split(" ")[0]}
    return [pid for raylet in raylets for pid in descendants(raylet)
            if "RayTrainWorker" in cmdline(pid) and _parent(pid) in raylets]  # not their helpers


def _parent(pid: int) -> int:
    try:
        return int((Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return -1


def sigkill(pids: Sequence[int]) -> None:
    """SIGKILL each of ``pids``, skipping those already gone (e.g. the ``descendants`` of a
    process killed a moment before)."""
    import signal

    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
