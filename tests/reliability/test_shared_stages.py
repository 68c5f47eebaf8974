"""Two sweeps started together on one work dir and one ``mlflow server`` (issue #11):

- A is ``+experiment=sampler_steps`` with ``eval.num_workers=2`` on a 2-CPU cluster: three
  evaluations that each need both CPUs for their actors (placement groups; without them
  the pools deadlocked), over one first stage and one LDM that its three trials share;
- B is a different LDM over the same first stage.

Both use ``ldm.latent_cache=true``. The shared first stage trains once, the latent cache is
built once, nothing crashes or hangs, and no run is left RUNNING.
"""

from __future__ import annotations

import re
import subprocess
import sys
import time

import pytest

from platform.tracking import TrackingStore
from tests.conftest import REPO_ROOT
from tests.platform.orchestration.test_sweep_e2e import _TINY_FIRST_STAGE, _runs, _sweep_args
from tests.reliability.clusters import MlflowServer

pytestmark = pytest.mark.slow
TIMEOUT_S = 1200  # the deadlock this guards against makes no progress at all


@pytest.fixture
def server(tmp_path):
    server = MlflowServer(tmp_path / "mlflow")
    server.start()
    yield server
    server.stop()


def test_two_sweeps_sharing_a_first_stage_and_latent_cache_run_it_once(figures, tmp_path, tiny_shards, server):
    work = tmp_path / "work"
    # Stages only as long as the assertions need: what is under test is scheduling and locking.
    common = ["ldm.latent_cache=true", f"tracking.uri={server.url}", "ldm.train.steps=10", "ldm.train.ckpt_every=10",
              *_TINY_FIRST_STAGE]
    sweep_a = _sweep_args(work, tiny_shards, "+experiment=sampler_steps", "eval.num_workers=2",
                          "eval.sampling_steps=[5,10]", "eval.checkpoints=last", "eval.num_samples=8",
                          "eval.batch_size=4", "eval.metrics=[fid]", "eval.uncertainty_repeats=2", *common)
    sweep_b = _sweep_args(work, tiny_shards, "first_stage=kl_f4", "ldm.train.lr=1e-4", "sweep.stages=[first_stage,ldm]",
                          *common)
    started = time.time()
    procs = [subprocess.Popen([sys.executable, "-m", *args], cwd=REPO_ROOT, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True, start_new_session=True)
             for args in (sweep_a, sweep_b)]
    try:
        outputs = [proc.communicate(timeout=TIMEOUT_S - (time.time() - started))[0] for proc in procs]
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
    wall_s = time.time() - started
    for proc, output in zip(procs, outputs):
        assert proc.returncode == 0, output[-4000:]

    # Each stage directory was started once: the shared first stage trained once, not twice.
    starts = {log.parent.parent.name + "/" + log.parent.name[:8]:
              len(re.findall(r"^== \w+ \w+ started", log.read_text(), re.MULTILINE))
              for log in work.glob("stages/*/*/stage.log")}
    assert len([k for k in starts if k.startswith("first_stage/")]) == 1, starts
    assert len([k for k in starts if k.startswith("ldm/")]) == 2 and set(starts.values()) == {1}, starts
    caches = [p.name for p in (work / "latent_cache").iterdir()]
    assert len([name for name in caches if not name.startswith(".")]) == 1, caches  # built once, reused
    assert not [name for name in caches if name.startswith(".tmp-")], caches  # nothing half-built

    assert not (work / "mlflow.db").exists()  # everything went to the server
    assert len(list(work.glob("stages/first_stage/*/record.json"))) == 1
    store = TrackingStore(server.url)
    everything = store.runs("sampler_steps") + store.runs("default")
    assert not [r.info.run_name for r in everything if r.info.status == "RUNNING"]
    assert len(_runs(store, "sampler_steps", kind="trial")) == 3  # guidance 1.0, 1.5, 3.0
    assert len(_runs(store, "sampler_steps", kind="stage", stage="first_stage")) == 1
    assert len(_runs(store, "sampler_steps", kind="stage", stage="ldm")) == 1  # shared by the three trials
    assert len(_runs(store, "sampler_steps", kind="stage", stage="eval")) == 3
    for trial in _runs(store, "sampler_steps", kind="trial"):
        assert trial.info.status == "FINISHED"
        assert {"eval/ddim5/fid", "eval/ddim10/fid", "perf/sample_img_per_s/ddim5"} <= set(trial.data.metrics)
    (trial_b,) = _runs(store, "default", kind="trial")
    assert trial_b.info.status == "FINISHED"
    figures(f"two sweeps together (sampler_steps eval.num_workers=2 + a second LDM, shared first stage "
            f"and latent cache): both done in {wall_s:.0f} s; stage starts {starts}")
