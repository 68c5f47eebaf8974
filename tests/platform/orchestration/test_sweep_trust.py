"""Results users can trust, end to end (issue 10's acceptance), on one smoke trial.

One single-trial sweep (``+experiment=downsample_factor`` at f = 4, two training steps per
stage, N = 8) runs from a scratch git copy of the repository, so the commits that change the
LDM loss or a metric are real commits and this checkout stays untouched. The steps share one
work directory and run in file order, each continuing from the state the previous one left:

    sweep -> (a) LDM-loss commit -> (b) metric commit -> (c) a deleted LDM checkpoint
          -> (e) the work directory moved -> (f) three plain reruns -> (d) sweep.rerun=[eval]

Field-by-field key tests (test_keys.py), fingerprints over a changed tree
(test_fingerprint.py), validation (config/test_validate.py, test_sweep_cli.py) and the cache
CLI (test_cache.py) prove the rest of the acceptance without Ray.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from platform.tracking import STALE_TAG, TrackingStore
from tests.conftest import REPO_ROOT

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

EXPERIMENT = "downsample_factor"
_GIT = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@x", "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@x"}
# One trial with a first stage (f = 4); the smallest run that still has every stage.
_TINY = ["+experiment=downsample_factor", "scale=smoke", "first_stage=kl_f4", "first_stage.train.steps=2",
         "first_stage.train.ckpt_every=2", "ldm.train.steps=2", "ldm.train.ckpt_every=2", "eval.num_samples=8",
         "eval.batch_size=8", "eval.metrics=[fid]", "eval.sampling_steps=[2]", "eval.uncertainty_repeats=2", "first_stage.rfid=false",
         "cluster.num_cpus=2"]
LDM_LOSS = ("platform/ldm/diffusion.py", "    x_t = q_sample(scheduler, x0, noise, t)",
            "    x_t = q_sample(scheduler, x0, noise, t) * 1.0")
METRIC = ("evaluation/metrics.py", "    diff = mu1 - mu2", "    diff = (mu1 - mu2) * 1.0")


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


def _commit(repo: Path, change: tuple[str, str, str], message: str) -> str:
    path, old, new = change
    text = (repo / path).read_text()
    assert old in text, f"{path} no longer has {old!r}: update this test"
    (repo / path).write_text(text.replace(old, new, 1))
    _git(repo, "commit", "-qam", message)
    return _git(repo, "rev-parse", "HEAD")


@dataclass
class Sweep:
    """The scratch checkout, the work directory, and what the steps so far left behind."""

    repo: Path
    work: Path
    shards: tuple[Path, Path]
    commits: dict[str, str] = field(default_factory=dict)
    failed: list[str] = field(default_factory=list)
    history: dict = field(default_factory=dict)

    def run(self, *extra: str) -> subprocess.CompletedProcess:
        train, test = self.shards
        out = subprocess.run(
            [sys.executable, "-m", "platform.sweep", *_TINY, f"data.train_shards={train}",
             f"data.eval_shards={test}", f"paths.work_dir={self.work}", *extra],
            cwd=self.repo, capture_output=True, text=True, timeout=600, env={**os.environ, "HYDRA_FULL_ERROR": "0"})
        assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
        return out

    @property
    def store(self) -> TrackingStore:
        return TrackingStore(f"sqlite:///{self.work / 'mlflow.db'}")

    def records(self) -> dict[str, dict[str, dict[str, Any]]]:
        """stage -> key -> finished record under the work directory."""
        found: dict[str, dict[str, dict[str, Any]]] = {}
        for path in self.work.glob("stages/*/*/record.json"):
            record = json.loads(path.read_text())
            found.setdefault(record["stage"], {})[record["key"]] = record
        return found

    def finished(self) -> dict[str, dict[str, float]]:
        """stage -> key -> finished_at: equal means reused, not recomputed."""
        return {stage: {key: r["finished_at"] for key, r in recs.items()} for stage, recs in self.records().items()}

    def trial(self):
        """The sweep's current trial run (earlier ones are tagged stale)."""
        (trial,) = [r for r in self.store.runs(EXPERIMENT, "tags.kind = 'trial'")
                    if r.data.tags.get(STALE_TAG) != "true"]
        return trial

    def metric_history(self) -> dict[tuple[str, str], list]:
        store = self.store
        return {(run.info.run_id, name): store.metric_history(run.info.run_id, name)
                for run in store.runs(EXPERIMENT) for name in run.data.metrics}

    def step(self, name: str, *needs: str) -> None:
        missing = [n for n in needs if n in self.failed]
        if missing:
            pytest.fail(f"needs step(s) {missing}, which failed")
        self.failed.append(name)  # removed by done() when the step's assertions passed

    def done(self, name: str) -> None:
        self.failed.remove(name)


@pytest.fixture(scope="module")
def sweep(tmp_path_factory, tiny_shards) -> Sweep:
    root = tmp_path_factory.mktemp("trust")
    repo = _scratch_repo(root)
    state = Sweep(repo, root / "work", tiny_shards, commits={"A": _git(repo, "rev-parse", "HEAD")})
    state.step("sweep")
    state.run()
    state.done("sweep")
    return state


def test_a_changed_ldm_loss_reruns_ldm_and_eval_and_keeps_the_first_stage(sweep):
    sweep.step("a")
    before = sweep.finished()
    assert [len(before[s]) for s in ("first_stage", "ldm", "eval")] == [1, 1, 1]
    sweep.commits["B"] = _commit(sweep.repo, LDM_LOSS, "scratch B: LDM loss")
    out = sweep.run()
    after = sweep.finished()
    assert after["first_stage"] == before["first_stage"]  # reused: same key, not recomputed
    assert "first_stage f=4 kl: cached" in out.stderr  # progress lines go to stderr
    assert len(after["ldm"]) == 2 and len(after["eval"]) == 2  # new keys beside the old results
    tags = sweep.trial().data.tags
    assert tags["first_stage_commit"] == sweep.commits["A"] != tags["ldm_commit"] == sweep.commits["B"]
    assert tags["eval_commit"] == sweep.commits["B"]
    store = sweep.store
    assert len(store.runs(EXPERIMENT, "tags.stage = 'first_stage'")) == 1
    assert len(store.runs(EXPERIMENT, f"tags.kind = 'trial' and tags.{STALE_TAG} = 'true'")) == 1
    sweep.done("a")


def test_b_a_changed_metric_reruns_eval_only(sweep):
    sweep.step("b", "a")
    before = sweep.finished()
    sweep.commits["C"] = _commit(sweep.repo, METRIC, "scratch C: metric")
    sweep.run()
    after = sweep.finished()
    assert after["first_stage"] == before["first_stage"] and after["ldm"] == before["ldm"]
    assert len(after["eval"]) == 3
    tags = sweep.trial().data.tags
    assert (tags["first_stage_commit"], tags["ldm_commit"], tags["eval_commit"]) == (
        sweep.commits["A"], sweep.commits["B"], sweep.commits["C"])
    sweep.done("b")


def test_c_a_deleted_ldm_checkpoint_is_named_and_its_stage_reruns(sweep):
    sweep.step("c", "b")
    trial = sweep.trial()
    ldm_key = trial.data.tags["ldm_key"]
    ldm = sweep.records()["ldm"][ldm_key]
    checkpoint = sweep.work / "stages" / "ldm" / ldm_key / ldm["checkpoint"]  # stored relative
    assert checkpoint.is_dir()
    shutil.rmtree(checkpoint)
    before, history = sweep.finished(), sweep.metric_history()
    out = sweep.run()
    assert f"ldm {ldm_key}: " in out.stderr and checkpoint.name in out.stderr and "running it again" in out.stderr
    after = sweep.finished()
    assert after["first_stage"] == before["first_stage"]
    assert after["ldm"][ldm_key] > before["ldm"][ldm_key]  # same key, trained again
    assert after["eval"][trial.data.tags["eval_key"]] > before["eval"][trial.data.tags["eval_key"]]
    assert (sweep.work / "stages" / "ldm" / ldm_key / ldm["checkpoint"]).is_dir()
    # The replaced results' runs keep their history and are marked; the new facts go to new runs.
    store = sweep.store
    old_ldm = store.get_run(ldm["run_id"]).data.tags
    assert old_ldm[STALE_TAG] == "true" and old_ldm["replaced_by"] != ldm["run_id"]
    assert sweep.trial().info.run_id != trial.info.run_id
    assert {k: v for k, v in sweep.metric_history().items() if k in history} == history
    sweep.done("c")


def test_e_a_moved_work_dir_is_all_cached(sweep, tmp_path_factory):
    sweep.step("e", "c")
    before, sweep.history = sweep.finished(), sweep.metric_history()
    moved = tmp_path_factory.mktemp("moved") / "work"
    shutil.move(sweep.work, moved)
    sweep.work = moved
    out = sweep.run()
    assert out.stderr.count(": cached") == 3 and "running it again" not in out.stderr
    assert sweep.finished() == before
    sweep.done("e")


def test_f_reruns_of_a_finished_sweep_leave_every_metric_history_unchanged(sweep):
    sweep.step("f", "e")
    runs = len(sweep.store.runs(EXPERIMENT))
    for _ in range(2):  # with (e)'s rerun, three
        sweep.run()
    assert sweep.metric_history() == sweep.history
    assert len(sweep.store.runs(EXPERIMENT)) == runs
    sweep.done("f")


def test_d_rerun_eval_re_evaluates_the_moved_checkpoints_without_retraining(sweep):
    sweep.step("d", "e")
    before, history = sweep.finished(), sweep.metric_history()
    trial = sweep.trial()
    out = sweep.run("sweep.rerun=[eval]")
    assert "sweep.rerun asks for it" in out.stderr
    after = sweep.finished()
    assert after["first_stage"] == before["first_stage"] and after["ldm"] == before["ldm"]
    eval_key = trial.data.tags["eval_key"]
    assert after["eval"][eval_key] > before["eval"][eval_key]
    evaluated = sweep.records()["eval"][eval_key]
    assert evaluated["curve"] and all(value == value for value in evaluated["summary"].values())  # no NaN
    # A forced rerun is a new fact: a new trial run, the old one's history untouched.
    assert sweep.trial().info.run_id != trial.info.run_id
    assert {k: v for k, v in sweep.metric_history().items() if k in history} == history
    sweep.done("d")
