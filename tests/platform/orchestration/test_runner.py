"""The sweep runner with stub stages on a real local Ray and a real SQLite MLflow store:
shared stages run once, reruns use the finished records, failures reach exactly the
trials that depend on them, writer failures are reported, and Ray resources are right."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
from mlflow.entities import RunStatus

from platform.config.compose import compose_config, expand_sweep
from platform.orchestration.plan import plan_trials
from platform.orchestration.runner import DRAIN_TIMEOUT_S, SweepRunner, _resources, _task_options
from platform.tracking import TrackingStore
from tests.platform.orchestration import stubs

EXPERIMENT = "stubbed"


def _plans(work: Path, shards: tuple[Path, Path], *axes: str):
    """Trials over one shared first stage (two LDM learning rates), plus any other ``axes``;
    no evaluation stage. All trials start at once: the depth-first gate (tested in
    test_depth_first.py) would add a Ray worker process per gated trial to every run."""
    train, test = shards
    overrides = expand_sweep(["scale=smoke", f"paths.work_dir={work}", f"data.train_shards={train}",
                              f"data.eval_shards={test}", "sweep.stages=[first_stage,ldm]",
                              f"tracking.experiment_name={EXPERIMENT}", "sweep.max_concurrent_trials=4", *axes,
                              "ldm.train.lr=1e-4,2e-4"])
    return plan_trials([compose_config(o) for o in overrides], overrides)


@pytest.fixture(scope="module")
def plans(tiny_shards, tmp_path_factory):
    """Four trials: two first stages (kl_f4, kl_f8), each shared by two LDM learning rates.
    Composed once; every run of the sweep below uses them."""
    work = tmp_path_factory.mktemp("runner") / "work"
    return work, _plans(work, tiny_shards, "first_stage=kl_f4,kl_f8")


def _run(plans, **functions) -> tuple[int, SweepRunner]:
    runner = SweepRunner(plans, stage_functions=functions)
    return runner.run(), runner


def _calls(work: Path, stage: str, key: str = "*") -> int:
    """How often ``stage`` ran under ``key`` (every key by default)."""
    return sum(len(p.read_text().splitlines()) for p in (work / "stages" / stage).glob(f"{key}/calls"))


def _status(store: TrackingStore, run_id: str) -> str:
    return store.client.get_run(run_id).info.status


def _trial(runner: SweepRunner, first_stage: str, lr: float):
    (trial,) = [t for t in runner.trials
                if t.cfg["first_stage"]["name"] == first_stage and t.cfg["ldm"]["train"]["lr"] == lr]
    return trial


def test_failures_reach_exactly_their_trials_and_reruns_use_the_records(ray_cluster, plans, capsys,
                                                                        new_sqlite_store):
    """One sweep, three runs on a real local Ray and SQLite store:

    1. kl_f8's shared first stage fails: both its trials fail with it and their LDMs never
       run; kl_f4's first stage is trained once for its two trials, whose LDM at the high
       learning rate fails alone; the other finishes although one of its writes is refused
       (a tracking failure never fails training, and it is reported).
    2. The fixed code: the failed stages run again, the finished ones are reused unrun.
    3. Everything finished: a rerun calls no stage function (they would fail) and adds no run.
    """
    work, plans = plans
    new_sqlite_store(work / "mlflow.db")  # where the sweep's default store is
    code, runner = _run(plans, first_stage=stubs.first_stage_fails_for_kl_f8,
                        ldm=stubs.ldm_fails_at_high_lr_after_a_rejected_write)
    assert code == 1
    store = TrackingStore(runner.uri)
    ok, diverged = _trial(runner, "kl_f4", 1e-4), _trial(runner, "kl_f4", 2e-4)
    f8 = [_trial(runner, "kl_f8", lr) for lr in (1e-4, 2e-4)]
    # The shared stages: one key, one run, one call for both trials.
    assert ok.keys["first_stage"] == diverged.keys["first_stage"] and ok.keys["ldm"] != diverged.keys["ldm"]
    assert f8[0].keys["first_stage"] == f8[1].keys["first_stage"] != ok.keys["first_stage"]
    assert [_calls(work, "first_stage", t.keys["first_stage"]) for t in (ok, f8[0])] == [1, 1]
    assert [_calls(work, "ldm", t.keys["ldm"]) for t in (ok, diverged, *f8)] == [1, 1, 0, 0]
    for trial in (ok, diverged):
        tags = store.client.get_run(trial.run_id).data.tags
        assert tags["first_stage_run_id"] == runner.stage_runs[ok.keys["first_stage"]]  # linked, not duplicated
        assert tags["ldm_key"] == trial.keys["ldm"] and tags["first_stage_key"] == ok.keys["first_stage"]
    # The trial that finished, whatever the store refused.
    assert ok.error is None and ok.records["first_stage"]["step"] == 1
    assert _status(store, ok.run_id) == RunStatus.to_string(RunStatus.FINISHED)
    assert _status(store, runner.stage_runs[ok.keys["ldm"]]) == "FINISHED"
    # The trial that failed alone.
    assert diverged.failed_stage == "ldm" and "ldm diverged on purpose" in diverged.error
    assert _status(store, diverged.run_id) == "FAILED"
    # The failed shared stage fails every trial that needs it.
    for trial in f8:
        assert trial.failed_stage == "first_stage" and "first stage exploded on purpose" in trial.error
        assert _status(store, trial.run_id) == "FAILED"
    assert _status(store, runner.stage_runs[f8[0].keys["first_stage"]]) == "FAILED"
    assert _status(store, runner.parent_run) == "FAILED"
    out, err = capsys.readouterr()
    assert "first stage exploded on purpose" in out and "ldm diverged on purpose" in out  # the summary names causes
    assert "MLflow writes failed" in err  # the refused write is reported
    runs_before = len(store.runs(EXPERIMENT))

    code, fixed = _run(plans, first_stage=stubs.first_stage_ok, ldm=stubs.ldm_ok)
    assert code == 0
    assert [_calls(work, "first_stage", t.keys["first_stage"]) for t in (ok, f8[0])] == [1, 2]
    assert [_calls(work, "ldm", t.keys["ldm"]) for t in (ok, diverged, *f8)] == [1, 2, 1, 1]
    assert all(t.error is None and _status(store, t.run_id) == "FINISHED" for t in fixed.trials)
    assert _status(store, fixed.parent_run) == "FINISHED"
    assert _trial(fixed, "kl_f4", 1e-4).records["ldm"]["run_id"] == ok.records["ldm"]["run_id"]  # reused
    assert len(store.runs(EXPERIMENT)) == runs_before  # failed runs reopened, not duplicated

    code, again = _run(plans, first_stage=stubs.first_stage_fails, ldm=stubs.ldm_fails_at_high_lr)
    assert code == 0  # every stage finished before: the (now failing) functions are never called
    assert [_calls(work, "first_stage", t.keys["first_stage"]) for t in (ok, f8[0])] == [1, 2]
    assert [_calls(work, "ldm", t.keys["ldm"]) for t in (ok, diverged, *f8)] == [1, 2, 1, 1]
    assert len(store.runs(EXPERIMENT)) == runs_before  # no duplicate runs
    assert [t.records["ldm"]["run_id"] for t in again.trials] == [t.records["ldm"]["run_id"] for t in fixed.trials]


@pytest.mark.parametrize("stage,workers,gpu", list(itertools.product(["first_stage", "ldm"], [1, 2], [False, True])))
def test_training_tasks_hold_a_cpu_only_when_they_train_in_process(stage, workers, gpu):
    cfg = {stage: {"train": {"num_workers": workers, "use_gpu": gpu}}}
    in_process = workers == 1 and not gpu  # otherwise Ray Train's workers hold the devices
    assert _resources(stage, cfg) == ({"num_cpus": 1} if in_process else {"num_cpus": 0})


@pytest.mark.parametrize("workers,gpus", list(itertools.product([1, 2, 4], [0, 0.5, 1])))
def test_evaluation_tasks_hold_devices_only_without_worker_actors(workers, gpus):
    cfg = {"eval": {"num_workers": workers, "gpus_per_worker": gpus}}
    expected = {"num_cpus": 1, "num_gpus": gpus} if workers == 1 else {"num_cpus": 0}  # actors hold them
    assert _resources("eval", cfg) == expected


@pytest.mark.parametrize("stage,workers,gpu", list(itertools.product(["first_stage", "ldm"], [1, 2], [False, True])))
def test_restarts_have_one_budget_per_stage(stage, workers, gpu):
    """Ray Train restarts and task retries never multiply: one of them has the budget."""
    cfg = {stage: {"train": {"num_workers": workers, "use_gpu": gpu, "max_failures": 3}}}
    options = _task_options(stage, cfg, "ab" * 28)
    if workers == 1 and not gpu:  # the task is the training process: Ray retries it
        assert options == {"max_retries": 3}
    else:  # Ray Train restarts the worker group (FailureConfig); the task itself never
        assert options["max_retries"] == 0 and options["scheduling_strategy"].node_id == "ab" * 28
    assert _task_options("eval", {"eval": {"num_workers": workers}}, "x")["max_retries"] == 1


def test_a_store_failure_while_recording_results_says_so(monkeypatch):
    import ray

    from platform.tracking import TrackingUnavailable

    class Writer:
        class call:
            @staticmethod
            def remote(*args, **kwargs):
                return None

    def failing_get(*args, **kwargs):
        raise ray.exceptions.RayTaskError("call", "traceback", ConnectionError("503 Service Unavailable"))

    runner = SweepRunner.__new__(SweepRunner)
    runner.writer, runner.uri = Writer(), "http://127.0.0.1:5000"
    monkeypatch.setattr(ray, "get", failing_get)
    for phase, said, not_said in (("open", "opening the sweep's runs", "recording"),
                                  ("finish", "recording the sweep's results", "nothing was trained")):
        runner.phase = phase
        with pytest.raises(TrackingUnavailable) as raised:
            runner._call("run_tags", "run")
        assert said in str(raised.value) and not_said not in str(raised.value) and "503" in str(raised.value)


def test_recording_results_first_waits_out_an_outage():
    """The last stage may end while the store is down: the driver drains the spool (bounded)
    before it reads the store back, instead of failing the finished sweep (issue #11)."""
    from types import SimpleNamespace

    asked = []

    class Read(Exception):
        pass

    def ask(method: str, *args, **kwargs):
        asked.append((method, args[0]))
        if method == "call":
            raise Read
        return 0

    runner = SweepRunner.__new__(SweepRunner)
    runner.writer, runner.trials, runner._ask = object(), [SimpleNamespace(run_id="r", records={})], ask
    with pytest.raises(Read):
        runner.finish()
    assert asked == [("drain", DRAIN_TIMEOUT_S), ("call", "run_tags")]

@pytest.mark.slow  # starts Ray worker processes: seconds
def test_a_stage_another_sweep_finished_meanwhile_ends_this_sweeps_run(ray_cluster, tmp_path):
    """Two sweeps started together both decide to run a shared stage; the second finds the
    first's record under the stage lock. The run it opened for the stage is ended, pointing at
    the run with the history, not left RUNNING."""
    from platform.orchestration.progress import RemoteProgressBoard
    from platform.orchestration.stage_task import StageSpec, remote_execute_stage
    from platform.orchestration.writer import start_writer

    work = tmp_path / "work"
    directory = work / "stages" / "first_stage" / "k"
    directory.mkdir(parents=True)
    uri = f"sqlite:///{work / 'mlflow.db'}"
    store = TrackingStore(uri)
    experiment = store.ensure_experiment(EXPERIMENT, artifact_root=work / "mlartifacts")
    theirs, ours = (store.start_run(experiment, f"first_stage {who}", {"kind": "stage", "who": who})
                    for who in ("theirs", "ours"))
    writer, board = start_writer(uri, work), RemoteProgressBoard.remote()

    def run(run_id: str) -> dict:
        spec = StageSpec("first_stage", "k", {}, str(directory), run_id, 1.0, function=stubs.first_stage_ok)
        return ray_cluster.get(remote_execute_stage.remote(spec, writer, board))

    assert run(theirs)["run_id"] == run(ours)["run_id"] == theirs
    assert _calls(work, "first_stage") == 1
    assert _status(store, theirs) == _status(store, ours) == "FINISHED"
    assert store.client.get_run(ours).data.tags["computed_by_run"] == theirs
