"""Results users can trust, end to end: keys follow the code, cache hits are verified,
records move with their directory, and reruns never duplicate MLflow history.

One small sweep (one trial, 4 + 4 training steps, N = 8) in a scratch git copy of the
repository, so that commits changing the LDM loss or a metric are real commits.
"""

from __future__ import annotations

import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from platform.tracking import TrackingStore
from tests.conftest import REPO_ROOT

# Quarantined, not deleted: written in a session whose 2-core box ran at load 15-50, where this
# test (two trainings and seven sweeps) never got past its second sweep (Ray start-up timed
# out). Its pieces are unit-tested (test_keys, test_records, test_fingerprint, test_cache); run it by
# hand with LDM_RUN_UNVERIFIED=1 and drop this skip once it has passed on a quiet machine.
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(os.environ.get("LDM_RUN_UNVERIFIED") != "1",
                       reason="unverified end-to-end trust test (issue 10): set LDM_RUN_UNVERIFIED=1 to run"),
]

_GIT = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@x", "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@x"}
_SMALL = ["scale=smoke", "first_stage.train.steps=4", "first_stage.train.ckpt_every=2", "ldm.train.steps=4",
          "ldm.train.ckpt_every=2", "eval.num_samples=8", "eval.metrics=[fid]", "eval.sampling_steps=[5]"]


def _git(repo: Path, *args: str) -> str:
    out = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True,
                         env={**os.environ, **_GIT}, check=True)
    return out.stdout.strip()


def _scratch_repo(root: Path) -> Path:
    """The working tree as it is (tracked and untracked, not ignored), committed once."""
    listed = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=REPO_ROOT,
                            capture_output=True, text=True, check=True).stdout.split("\0")
    repo = root / "repo"
    for name in filter(None, listed):
        source = REPO_ROOT / name
        if source.is_file() and not source.is_symlink():
            (repo / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, repo / name)
    _git(repo, "init", "-q")
    _git(repo, "add", "-A")
    _git(repo, "commit", "-qm", "scratch A")
    return repo


def _edit(repo: Path, path: str, old: str, new: str, message: str) -> str:
    text = (repo / path).read_text()
    assert old in text, f"{path} no longer has {old!r}: update this test"
    (repo / path).write_text(text.replace(old, new, 1))
    _git(repo, "commit", "-qam", message)
    return _git(repo, "rev-parse", "HEAD")


def _run(repo: Path, *args: str) -> subprocess.CompletedProcess:
    out = subprocess.run([sys.executable, "-m", *args], cwd=repo, capture_output=True, text=True, timeout=900,
                         env={**os.environ, "HYDRA_FULL_ERROR": "0"})
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    return out


def _records(work: Path) -> dict[str, dict[str, float]]:
    """stage -> {key: finished_at} of every finished record under ``work``."""
    import json

    found: dict[str, dict[str, float]] = {}
    for path in work.glob("stages/*/*/record.json"):
        record = json.loads(path.read_text())
        found.setdefault(record["stage"], {})[record["key"]] = record["finished_at"]
    return found


def _history(store: TrackingStore) -> dict[tuple[str, str], list]:
    snapshot = {}
    for run in store.runs("default"):
        for name in run.data.metrics:
            snapshot[(run.info.run_id, name)] = store.metric_history(run.info.run_id, name)
    return snapshot


def _current_trial(store: TrackingStore):
    (trial,) = [r for r in store.runs("default", "tags.kind = 'trial'") if r.data.tags.get("stale") != "true"]
    return trial


@pytest.mark.timeout(3600)  # seven small sweeps and two single-stage trainings
def test_keys_follow_code_hits_are_verified_records_move_and_history_stays_clean(tmp_path, tiny_shards):
    repo = _scratch_repo(tmp_path)
    commit_a = _git(repo, "rev-parse", "HEAD")
    train, test = tiny_shards
    work = tmp_path / "work"
    common = [*_SMALL, f"data.train_shards={train}", f"data.eval_shards={test}"]
    sweep = ["platform.sweep", *common, "cluster.num_cpus=2"]

    # Stages trained by `python -m platform.train` log like stage runs and are adopted by a sweep.
    for stage in ("first_stage", "ldm"):
        _run(repo, "platform.train", f"stage={stage}", *common, f"paths.work_dir={work}")
    _run(repo, *sweep, f"paths.work_dir={work}")
    store = TrackingStore(f"sqlite:///{work / 'mlflow.db'}")
    (ldm_run,) = store.runs("default", "tags.stage = 'ldm'")
    assert ldm_run.data.tags["launched_by"] == "platform.train" and "ldm.unet.channels" in ldm_run.data.params
    assert [s for s, _ in store.metric_history(ldm_run.info.run_id, "train/loss")] == [4]
    trial = _current_trial(store)
    assert math.isfinite(trial.data.metrics["perf/train_img_per_s"])
    assert trial.data.tags["eval.weights_source"] and len(trial.data.tags["eval.detector_sha256"]) == 64
    assert sum(tag.startswith("eval_identity.") for tag in trial.data.tags) == 2  # two checkpoints
    first = _records(work)

    # A changed line of the LDM loss: LDM and evaluation run again, the first stage is reused.
    commit_b = _edit(repo, "platform/ldm/diffusion.py", "    x_t = q_sample(scheduler, x0, noise, t)",
                     "    x_t = q_sample(scheduler, x0, noise, t) * 1.0", "scratch B: LDM loss")
    _run(repo, *sweep, f"paths.work_dir={work}")
    second = _records(work)
    assert second["first_stage"] == first["first_stage"]
    assert len(second["ldm"]) == 2 and len(second["eval"]) == 2
    trial = _current_trial(store)
    tags = trial.data.tags
    assert (tags["first_stage_commit"], tags["ldm_commit"], tags["eval_commit"]) == (commit_a, commit_b, commit_b)
    assert len(store.runs("default", "tags.kind = 'trial' and tags.stale = 'true'")) == 1

    # A changed metric: evaluation only.
    commit_c = _edit(repo, "evaluation/metrics.py", "    diff = mu1 - mu2", "    diff = (mu1 - mu2) * 1.0",
                     "scratch C: metric")
    _run(repo, *sweep, f"paths.work_dir={work}")
    third = _records(work)
    assert third["first_stage"] == second["first_stage"] and third["ldm"] == second["ldm"]
    assert len(third["eval"]) == 3
    assert _current_trial(store).data.tags["ldm_commit"] == commit_b
    assert _current_trial(store).data.tags["eval_commit"] == commit_c

    # A checkpoint the LDM record vouches for is deleted: named, re-run, and the sweep succeeds.
    (ldm_dir,) = [work / "stages" / "ldm" / key for key in third["ldm"] if key not in first["ldm"]]
    shutil.rmtree(ldm_dir / "checkpoints" / "step-00000002")
    out = _run(repo, *sweep, f"paths.work_dir={work}")
    assert "step-00000002" in out.stderr and "running it again" in out.stderr
    fourth = _records(work)
    assert fourth["first_stage"] == third["first_stage"] and fourth["ldm"] != third["ldm"]

    # The whole work directory moves: everything is reused; re-evaluating loads the moved checkpoints.
    moved = tmp_path / "moved"
    shutil.move(work, moved)
    _run(repo, *sweep, f"paths.work_dir={moved}", "sweep.rerun=[eval]")
    fifth = _records(moved)
    assert fifth["first_stage"] == fourth["first_stage"] and fifth["ldm"] == fourth["ldm"]
    assert fifth["eval"] != fourth["eval"]

    # Reruns of the finished sweep log nothing new.
    store = TrackingStore(f"sqlite:///{moved / 'mlflow.db'}")
    before, runs = _history(store), len(store.runs("default"))
    _run(repo, *sweep, f"paths.work_dir={moved}")
    assert _history(store) == before and len(store.runs("default")) == runs
    assert _records(moved) == fifth
