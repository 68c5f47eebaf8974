"""The shipped schedule definitions: the crontab line runs under cron's nearly empty environment."""

from __future__ import annotations

import os
import subprocess

import pytest

from tests.conftest import REPO_ROOT

pytestmark = pytest.mark.slow


def test_shipped_crontab_command_runs_with_an_empty_environment(tmp_path, tiny_shards):
    """Cron gives HOME and SHELL only, and another working directory: the command must still
    find the venv, the configs and the data (a repo whose data/ holds the tiny shards)."""
    repo = tmp_path / "repo"
    repo.mkdir()
    for name in ("platform", "evaluation", "conf", "experiments", "hydra_plugins", "scripts", ".venv",
                 "pyproject.toml"):
        (repo / name).symlink_to(REPO_ROOT / name)
    for split, source in zip(("train", "test"), tiny_shards):
        (repo / "data" / "fashion_mnist").mkdir(parents=True, exist_ok=True)
        (repo / "data" / "fashion_mnist" / split).symlink_to(source)
    (repo / "runs" / "nightly").mkdir(parents=True)
    lines = [line for line in (REPO_ROOT / "deploy" / "nightly" / "crontab").read_text().splitlines()
             if line.strip() and not line.startswith("#")]
    assignments = dict(line.split("=", 1) for line in lines if "=" in line.split()[0])
    (entry,) = [line for line in lines if "=" not in line.split()[0]]
    command = entry.split(None, 5)[5]  # after the five time fields, as cron hands it to the shell
    assert set(assignments) == {"REPO"}
    env = {"HOME": os.environ["HOME"], "SHELL": "/bin/sh", "REPO": str(repo)}
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    out = subprocess.run(["/usr/bin/env", "-i", *(f"{k}={v}" for k, v in env.items()), "/bin/sh", "-c", command],
                         cwd=elsewhere, capture_output=True, text=True, timeout=600)
    log = (repo / "runs" / "nightly" / "cron.log").read_text()
    assert out.returncode == 0, log[-3000:]
    assert "[nightly" in log and "nothing new" in log
    assert (repo / "runs" / "mlflow.db").is_file()  # relative paths resolved against the repo

    (repo / "data" / "fashion_mnist" / "train").unlink()  # no data: a setup error naming it
    out = subprocess.run(["/usr/bin/env", "-i", *(f"{k}={v}" for k, v in env.items()), "/bin/sh", "-c", command],
                         cwd=elsewhere, capture_output=True, text=True, timeout=600)
    assert out.returncode == 2 and "fashion_mnist/train" in (repo / "runs" / "nightly" / "cron.log").read_text()
