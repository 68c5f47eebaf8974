"""A sweep submitted as a Ray Job to a `ray start --head` cluster: the driver lives on the
cluster (a laptop may sleep), and its runs land in the store."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from platform.tracking import TrackingStore
from tests.conftest import REPO_ROOT
from tests.reliability.clusters import ray_start_head

pytestmark = pytest.mark.slow


def test_ray_job_submit_runs_a_smoke_sweep_into_the_store(tmp_path, tiny_shards):
    train, test = tiny_shards
    work = tmp_path / "work"
    store_uri = f"sqlite:///{work / 'mlflow.db'}"
    with ray_start_head() as head:
        # As the README says: the entrypoint names the project's interpreter; paths are absolute.
        entrypoint = [sys.executable, "-m", "platform.sweep", "scale=smoke", "first_stage=kl_f4",
                      "eval.checkpoints=last", f"paths.work_dir={work}", f"tracking.uri={store_uri}",
                      f"data.train_shards={train}", f"data.eval_shards={test}"]
        ray_cli = str(Path(sys.executable).parent / "ray")
        job = subprocess.run([ray_cli, "job", "submit", "--working-dir", str(REPO_ROOT), "--", *entrypoint],
                             cwd=REPO_ROOT, env=head["env"], capture_output=True, text=True, timeout=900)
    output = job.stdout + job.stderr
    assert job.returncode == 0 and "succeeded" in output, output[-4000:]
    assert f"joining the Ray cluster at {head['address']}" in output or "joining the Ray cluster" in output
    runs = TrackingStore(store_uri).runs("default")
    kinds = sorted(run.data.tags.get("kind") for run in runs)
    assert kinds == ["stage", "stage", "stage", "sweep", "trial"], kinds
    assert {run.info.status for run in runs} == {"FINISHED"}
