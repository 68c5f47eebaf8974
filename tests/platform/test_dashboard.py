"""``python -m platform.dashboard``: the links it prints and what it refuses (no server started)."""

from __future__ import annotations

import socket

import pytest

from platform.dashboard import DashboardError, main, runs_view_url, start_server


def test_runs_view_links():
    assert runs_view_url("http://127.0.0.1:5000/", "3") == "http://127.0.0.1:5000/#/experiments/3/runs"
    assert runs_view_url("http://h:1", "3", "abc").endswith("#/experiments/3/runs?viewStateShareKey=abc")


def test_a_taken_port_is_refused_before_mlflow_starts(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(DashboardError, match=f"port {port} on 127.0.0.1 is already in use.*--port"):
            start_server(f"sqlite:///{tmp_path / 'mlflow.db'}", "127.0.0.1", port)


def test_no_store_yet_says_to_run_a_sweep(tmp_path, capsys):
    assert main([f"paths.work_dir={tmp_path}"]) == 1
    assert "no MLflow store at sqlite:///" in capsys.readouterr().err
