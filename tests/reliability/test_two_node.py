"""A two-node Ray cluster on this machine, joined by ``cluster.address``, with a real
``mlflow server`` (issue #11). During the LDM stages both faults strike at once:

- the tracking server is stopped for ``OUTAGE_S`` (ten times the client's retry window of
  ~3 s: 2 retries, backoff factor 1; see platform/tracking.py), then restarted;
- the second node is killed (its raylet and every worker on it).

The sweep completes: the LDM that ran on the lost node is retried on the head and resumes
from its last checkpoint, training never waits for the server, and every point logged
during the outage is in the store afterwards, once.
"""

from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from platform.tracking import TrackingStore
from tests.conftest import REPO_ROOT
from tests.platform.orchestration.test_sweep_e2e import _TINY_FIRST_STAGE, _runs
from tests.reliability.clusters import MlflowServer, descendants, private_cluster, sigkill

pytestmark = pytest.mark.slow
STEPS = 50
OUTAGE_S = 30
NODE_LINE = re.compile(r"^== ldm (\w+) started .* on Ray node (\w+)$", re.MULTILINE)


def _ldm_nodes(work: Path) -> dict[Path, list[str]]:
    """LDM stage directory -> the node of each attempt, in order (from its stage.log)."""
    found = {}
    for log in work.glob("stages/ldm/*/stage.log"):
        found[log.parent] = [node for _, node in NODE_LINE.findall(log.read_text(errors="replace"))]
    return found


def _checkpoint_steps(stage_dir: Path) -> list[int]:
    return sorted(int(path.name.split("-")[1]) for path in stage_dir.glob("checkpoints/step-*"))


def test_sweep_survives_losing_a_node_and_the_tracking_server_at_once(figures, tmp_path, tiny_shards):
    train, test = tiny_shards
    work = tmp_path / "work"
    server = MlflowServer(tmp_path / "mlflow")
    server.start()
    # Fast node-death detection (default ~15 s): 5 missed health checks, 1 s apart.
    system_config = {"health_check_period_ms": 1000, "health_check_failure_threshold": 5}
    try:
        # One CPU each: the two LDMs run on different nodes.
        with private_cluster(num_cpus=1, _system_config=system_config, worker_nodes=[{"num_cpus": 1}]) as cluster:
            (second,) = cluster.workers
            head, lost = cluster.head_node.node_id, second.node_id
            # Two trials sharing one first stage; evaluation left out (not under test here).
            args = ["platform.sweep", "scale=smoke", "first_stage=kl_f4", "sweep.stages=[first_stage,ldm]",
                    "ldm.train.lr=1e-4,2e-4", f"ldm.train.steps={STEPS}", "ldm.train.log_every=1",
                    "ldm.train.ckpt_every=10", *_TINY_FIRST_STAGE, f"paths.work_dir={work}", f"tracking.uri={server.url}",
                    f"data.train_shards={train}", f"data.eval_shards={test}", f"cluster.address={cluster.address}"]
            proc = subprocess.Popen([sys.executable, "-m", *args], cwd=REPO_ROOT, stdout=subprocess.PIPE,
                                    stderr=subprocess.STDOUT, text=True, start_new_session=True)
            try:
                # Wait for the LDM on the second node to have a checkpoint.
                deadline, on_lost = time.time() + 1200, None
                while time.time() < deadline and proc.poll() is None and on_lost is None:
                    on_lost = next((d for d, nodes in _ldm_nodes(work).items()
                                    if nodes == [lost] and _checkpoint_steps(d)), None)
                    time.sleep(0.3)
                assert on_lost is not None, (_ldm_nodes(work), proc.poll())
                server.stop()
                down_at = time.time()
                checkpoint_at_kill = _checkpoint_steps(on_lost)[-1]
                # The whole node at once: its raylet and services, and the workers under the raylet
                # (which would otherwise train on until they notice their raylet is gone).
                workers = descendants(second.all_processes["raylet"][0].process.pid)
                cluster.remove_node(second, allow_graceful=False)
                sigkill(workers)
                time.sleep(max(0.0, down_at + OUTAGE_S - time.time()))
                server.start()
                up_at = time.time()
                output = proc.communicate(timeout=900)[0]
                done_s = time.time() - down_at
            finally:
                if proc.poll() is None:
                    proc.kill()
                    proc.communicate()
            (tmp_path / "sweep.out").write_text(output)  # kept for a failure's post-mortem
            logs = Path(cluster.temp_root).glob("ray/session_*/logs/worker-*")
            writer_log = "".join(path.read_text(errors="replace") for path in logs if path.suffix == ".err")
        assert proc.returncode == 0, "\n".join(line for line in output.splitlines() if "[state-dump]" not in line)[-6000:]
        # Stages ran on both nodes; the lost node's LDM was retried on the head and resumed.
        nodes = _ldm_nodes(work)
        assert sorted(nodes.values()) == sorted([[head], [lost, head]]) and nodes[on_lost] == [lost, head], (nodes, head, lost)
        resumed = re.findall(r"\[ldm\] resuming \S+ from step (\d+)", (on_lost / "stage.log").read_text())
        assert len(resumed) == 1 and int(resumed[0]) >= checkpoint_at_kill, (resumed, checkpoint_at_kill)
        assert "spooling writes" in writer_log and "spooled writes delivered" in writer_log, writer_log[-3000:]

        store = TrackingStore(server.url)
        runs = store.runs("default")
        assert sorted(run.data.tags.get("kind") for run in runs) == ["stage"] * 3 + ["sweep", "trial", "trial"]
        assert {run.info.status for run in runs} == {"FINISHED"}, [(r.info.run_name, r.info.status) for r in runs]
        during: list[int] = []  # steps trained (and logged) while the server was down
        for ldm_run in _runs(store, "default", kind="stage", stage="ldm"):
            history = store.metric_entries(ldm_run.info.run_id, "train/loss")  # (step, timestamp_ms, value)
            steps = [step for step, _, _ in history]
            assert steps == list(range(1, STEPS + 1)), steps  # no gap, no duplicate
            during += [step for step, stamp, _ in history if down_at * 1000 <= stamp <= up_at * 1000]
        # Training went on without the server, and what it logged meanwhile reached the store.
        assert len(during) >= 10, during
    finally:
        server.stop()
    figures(f"two nodes + outage: node lost after LDM step {checkpoint_at_kill}, resumed from it on the "
            f"head; server down {up_at - down_at:.0f} s, {len(during)} train/loss points logged meanwhile (steps "
            f"{min(during)}-{max(during)}), all in the store, 0 duplicates; sweep done {done_s:.0f} s after the "
            f"faults; {len(runs)} runs FINISHED")
