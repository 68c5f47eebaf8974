"""``python -m platform.dashboard``: the MLflow UI on a sweep's store, opened at its runs.

    python -m platform.dashboard +experiment=downsample_factor          # http://127.0.0.1:5000
    python -m platform.dashboard +experiment=kl_vs_vq --port 5001 paths.work_dir=runs

Composes the same config as ``platform.sweep`` (so ``paths.work_dir`` and ``tracking``
overrides point it at the same store), starts ``mlflow server`` on loopback with one
worker and MLflow's job runner off (a dashboard runs no jobs), and prints the URL of
the experiment's runs view: ``#/experiments/<id>/runs`` opens on the training-runs
table even in a fresh browser, where the experiment's default page would be MLflow 3's
GenAI overview. With ``tracking.uri=http://...`` a server already runs: the URL is
printed and nothing is started. Ctrl-C stops the server.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Optional, Sequence

DEFAULT_DASHBOARD = "http://127.0.0.1:5000"  # --host / --port defaults below
SERVER_ENV = {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false", "MLFLOW_DISABLE_TELEMETRY": "true"}


class DashboardError(RuntimeError):
    """The dashboard cannot start; the message says what to do."""


def runs_view_url(base_url: str, experiment_id: str, share_key: Optional[str] = None) -> str:
    """The experiment's training-runs table, e.g. ``http://127.0.0.1:5000/#/experiments/1/runs``;
    with ``share_key`` (a sweep id) the sweep's saved view: its trials ranked by FID."""
    url = f"{base_url.rstrip('/')}/#/experiments/{experiment_id}/runs"
    return f"{url}?viewStateShareKey={share_key}" if share_key else url


def port_is_free(host: str, port: int) -> bool:
    """Whether ``host:port`` can be bound now (a running dashboard or any program holds it otherwise)."""
    with socket.socket() as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def wait_for_port(host: str, port: int, process: subprocess.Popen, timeout_s: float = 120.0) -> None:
    """Return once ``host:port`` accepts connections; raise if ``process`` exits or time runs out."""
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        if process.poll() is not None:
            raise DashboardError(f"mlflow server exited with code {process.returncode} before serving")
        try:
            with socket.create_connection((host, port), timeout=1):
                return
        except OSError:
            time.sleep(0.3)
    raise DashboardError(f"mlflow server did not answer on {host}:{port} within {timeout_s:.0f} s")


def start_server(uri: str, host: str, port: int, log: Optional[Path] = None) -> subprocess.Popen:
    """``mlflow server`` on ``uri`` (one worker, no job runner), in its own process group.

    Raises ``DashboardError`` when the port is taken. The caller stops it with
    ``stop_server``. Output goes to ``log`` (default: inherited).
    """
    if not port_is_free(host, port):
        raise DashboardError(f"port {port} on {host} is already in use (another dashboard or program); "
                             f"stop it or pick a free one with --port PORT")
    mlflow = Path(sys.executable).parent / "mlflow"
    command = [str(mlflow), "server", "--backend-store-uri", uri, "--host", host, "--port", str(port),
               "--workers", "1"]
    output = open(log, "ab") if log else None
    try:
        process = subprocess.Popen(command, env={**os.environ, **SERVER_ENV}, stdout=output,
                                   stderr=subprocess.STDOUT if output else None, start_new_session=True)
    finally:
        if output:
            output.close()
    wait_for_port(host, port, process)
    return process


def stop_server(process: subprocess.Popen) -> None:
    """Stop the server and its workers (its whole process group)."""
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def experiment_id(uri: str, name: str) -> str:
    """The id of experiment ``name`` in the store at ``uri``; the error lists what exists."""
    from platform.tracking import TrackingStore

    client = TrackingStore(uri).client
    found = client.get_experiment_by_name(name)
    if found is None:
        names = sorted(e.name for e in client.search_experiments() if e.name != "Default")
        raise DashboardError(f"no experiment {name!r} in {uri}; it has: {', '.join(names) or 'none'} "
                             f"(pick one with +experiment=NAME or tracking.experiment_name=NAME)")
    return found.experiment_id


def newest_sweep_view(uri: str, experiment_id: str) -> Optional[str]:
    """The share key of the newest sweep's saved view in the experiment, if it has one."""
    from platform.tracking import SHARED_VIEW_TAG, TrackingStore

    client = TrackingStore(uri).client
    sweeps = client.search_runs([experiment_id], "tags.kind = 'sweep'", max_results=1,
                                order_by=["attributes.start_time DESC"])
    key = sweeps[0].data.tags.get("sweep_id") if sweeps else None
    return key if key and f"{SHARED_VIEW_TAG}{key}" in client.get_experiment(experiment_id).tags else None


def _urls(base_url: str, name: str, uri: str, exp_id: str) -> str:
    text = f"MLflow dashboard ({name}): {runs_view_url(base_url, exp_id)}"
    share_key = newest_sweep_view(uri, exp_id)
    if share_key:
        text += f"\n  newest sweep, trials ranked by FID: {runs_view_url(base_url, exp_id, share_key)}"
    return text


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m platform.dashboard", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default="127.0.0.1", help="interface to bind (default 127.0.0.1: this machine only)")
    parser.add_argument("--port", type=int, default=5000, help="port (default 5000); a taken port is refused")
    parser.add_argument("overrides", nargs="*", help="config overrides, as for platform.sweep (+experiment=NAME ...)")
    return parser


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = _parser().parse_args(argv)
    signal.signal(signal.SIGTERM, _interrupt)  # `kill` stops the server too, as Ctrl-C does
    from platform.config.compose import compose_config
    from platform.tracking import resolve_tracking_uri

    cfg = compose_config(args.overrides)
    work_dir = Path(cfg.paths.work_dir).resolve()
    uri = resolve_tracking_uri(cfg.tracking.uri, work_dir)
    name = cfg.tracking.experiment_name or cfg.experiment.name
    if uri.startswith("sqlite:///") and not Path(uri.removeprefix("sqlite:///")).is_file():
        print(f"error: no MLflow store at {uri}: run a sweep first, or point paths.work_dir / tracking.uri "
              f"at one", file=sys.stderr)
        return 1
    try:
        exp_id = experiment_id(uri, name)
        if uri.startswith(("http://", "https://")):  # a server already serves this store
            print(_urls(uri, name, uri, exp_id))
            return 0
        process = start_server(uri, args.host, args.port)
    except DashboardError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"{_urls(f'http://{args.host}:{args.port}', name, uri, exp_id)}\nstore {uri}; Ctrl-C stops it",
          flush=True)
    try:
        return process.wait()
    except KeyboardInterrupt:
        return 0
    finally:
        stop_server(process)


if __name__ == "__main__":
    sys.exit(main())
