"""Run a validated sweep as a Ray stage graph: the sweep's composition root.

Order matters: everything that can fail cheaply (data manifests, tracking store) is
checked before Ray starts; MLflow runs are opened (or reopened, on a relaunch) by the
driver through the single writer actor; each unique stage key becomes one Ray task,
so trials sharing a first stage wait on the same task.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence

import ray
import yaml
from omegaconf import OmegaConf

from platform.cluster import REPO_ROOT, check_cluster_store, check_workers, joined_address, ray_init
from platform.config.schema import Stage
from platform.orchestration.keys import dataset_ids, digest, stage_keys
from platform.orchestration.plan import TrialPlan
from platform.orchestration.progress import RemoteProgressBoard
from platform.orchestration.records import read_record, stage_dir
from platform.orchestration.render import ProgressPrinter, format_summary
from platform.orchestration.stage_task import StageSpec, describe_failure, remote_execute_stage
from platform.orchestration.writer import start_writer
from platform.report import build_report
from platform.training.paths import with_absolute_paths
from platform.redaction import redact, redact_override, redact_text
from platform.tracking import TrackingStore, TrackingUnavailable, flatten_config, resolve_tracking_uri


class SweepSetupError(RuntimeError):
    """Something outside the config (data, tracking, cluster) stops the sweep from starting."""


@dataclass
class Trial:
    plan: TrialPlan
    cfg: dict[str, Any]  # resolved, absolute paths
    keys: dict[str, Optional[str]] = field(default_factory=dict)
    dataset_ids: dict[str, str] = field(default_factory=dict)
    run_id: str = ""
    records: dict[str, dict[str, Any]] = field(default_factory=dict)
    error: Optional[str] = None
    failed_stage: Optional[str] = None


def _dataset_ids(cfg: dict[str, Any]) -> dict[str, str]:
    from platform.data.manifest import DataError

    try:
        return dataset_ids(cfg["data"])
    except DataError as error:
        raise SweepSetupError(f"{error} (for Fashion-MNIST: `make data`)") from None


def _git_commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True)
        dirty = subprocess.run(["git", "status", "--porcelain"], cwd=REPO_ROOT, capture_output=True, text=True)
        return out.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "") if out.returncode == 0 else "unknown"
    except OSError:
        return "unknown"


def _devices(stage: str, cfg: dict[str, Any]) -> float:
    if stage == Stage.eval.value:
        return max(1, cfg["eval"]["num_workers"])
    return cfg[stage]["train"]["num_workers"]


def _resources(stage: str, cfg: dict[str, Any]) -> dict[str, float]:
    """Ray resources of a stage task. Training on several workers or a GPU goes through
    Ray Train, whose workers hold the resources, so the orchestrating task holds none."""
    if stage == Stage.eval.value:
        workers, gpus = cfg["eval"]["num_workers"], cfg["eval"]["gpus_per_worker"]
        return {"num_cpus": 0} if workers > 1 else {"num_cpus": 1, "num_gpus": gpus}
    train = cfg[stage]["train"]
    return {"num_cpus": 0} if train["num_workers"] > 1 or train["use_gpu"] else {"num_cpus": 1}


class SweepRunner:
    """Opens the runs, submits the graph, waits, summarises."""

    def __init__(self, plans: Sequence[TrialPlan]) -> None:
        first = plans[0].cfg
        self.experiment = first.tracking.experiment_name or first.experiment.name
        # Absolute paths: Ray workers start in a copy of the repo, not here.
        self.trials = [Trial(plan, OmegaConf.to_container(with_absolute_paths(plan.cfg))) for plan in plans]
        self.work_dir = Path(self.trials[0].cfg["paths"]["work_dir"])
        self.uri = resolve_tracking_uri(first.tracking.uri, self.work_dir)
        self.cluster = first.cluster
        self.sweep_id = digest([self.experiment, [list(p.overrides) for p in plans]])
        self.commit = _git_commit()

    # -- before Ray ---------------------------------------------------------------
    def prepare(self) -> None:
        try:
            check_cluster_store(joined_address(self.cluster.address), self.trials[0].cfg["tracking"]["uri"])
        except ValueError as error:
            raise SweepSetupError(str(error)) from None
        for trial in self.trials:
            trial.dataset_ids = _dataset_ids(trial.cfg)
            trial.keys = stage_keys(trial.cfg, trial.dataset_ids)
        self.work_dir.mkdir(parents=True, exist_ok=True)
        try:  # creates the SQLite store and experiment once, here, before any worker
            self.experiment_id = TrackingStore(self.uri).ensure_experiment(
                self.experiment, artifact_root=self.work_dir / "mlartifacts")
        except TrackingUnavailable as error:
            raise SweepSetupError(str(error)) from None

    # -- runs ---------------------------------------------------------------------
    def _call(self, name: str, *args: Any, **kwargs: Any) -> Any:
        return ray.get(self.writer.call.remote(name, *args, **kwargs))

    def _open(self, name: str, identity: dict[str, str], parent: Optional[str] = None, **info: Any) -> str:
        """Reopen the run that ``identity`` names (a relaunch) or start it, then (re)set the
        descriptive ``info`` tags. Only identity finds a run: a rerun after a new commit
        must reopen, not duplicate."""
        run_id = self._call("open_run", self.experiment_id, name, identity, parent)
        tags = {"git_commit": self.commit, "sweep_id": self.sweep_id, **{k: str(v) for k, v in info.items()}}
        self._call("set_tags", run_id, tags)
        return run_id

    def open_runs(self) -> dict[str, tuple[str, Trial]]:
        """Parent, trial and stage runs; returns stage key -> (stage, first trial needing it)."""
        trial0 = self.trials[0]
        self.parent_run = self._open(f"sweep-{self.sweep_id}", {"kind": "sweep", "sweep_id": self.sweep_id},
                                     scale=trial0.cfg["scale"]["name"])
        overrides = {f"trial.{t.plan.index}": " ".join(map(redact_override, t.plan.overrides))
                     for t in self.trials}
        self._call("log_params", self.parent_run, overrides)
        owners: dict[str, tuple[str, Trial]] = {}
        for trial in self.trials:
            config_hash = digest(trial.keys)
            trial.run_id = self._open(
                f"trial-{trial.plan.index}-f{trial.cfg['first_stage']['f']}",
                {"kind": "trial", "sweep_id": self.sweep_id, "trial_key": config_hash}, self.parent_run,
                config_hash=config_hash, dataset_id=trial.dataset_ids["train"])
            self._call("log_params", trial.run_id, flatten_config(trial.cfg))
            self._call("log_bytes", trial.run_id, yaml.safe_dump(redact(trial.cfg), sort_keys=False).encode(),
                       "config.yaml")
            for stage in trial.plan.stages:
                key = trial.keys[stage]
                owners.setdefault(key, (stage, trial))
        self.stage_runs: dict[str, str] = {}
        for key, (stage, trial) in owners.items():
            record = read_record(stage_dir(self.work_dir, stage, key))
            if record is not None:  # finished earlier (maybe by another sweep): link it
                self.stage_runs[key] = record["run_id"]
                continue
            self.stage_runs[key] = self._open(f"{stage}-{key[:8]}", {"kind": "stage", "stage_key": key},
                                              trial.run_id, stage=stage, config_hash=key)
        for trial in self.trials:
            links = {f"{stage}_run_id": self.stage_runs[trial.keys[stage]] for stage in trial.plan.stages}
            links.update({f"{stage}_key": trial.keys[stage] for stage in trial.plan.stages})
            self._call("set_tags", trial.run_id, links)
        return owners

    # -- the graph ----------------------------------------------------------------
    def submit(self, owners: dict[str, tuple[str, Trial]]) -> dict[int, Any]:
        """One task per unique key; returns trial index -> ref of its last stage."""
        refs: dict[str, Any] = {}
        finals: dict[int, Any] = {}
        for trial in self.trials:
            upstream: list[Any] = []
            for stage in trial.plan.stages:
                key = trial.keys[stage]
                if key not in refs:
                    owner_cfg = owners[key][1].cfg
                    spec = StageSpec(stage, key, owner_cfg, str(stage_dir(self.work_dir, stage, key)),
                                     self.stage_runs[key], _devices(stage, owner_cfg))
                    refs[key] = remote_execute_stage.options(
                        name=f"{stage}:{key[:8]}", **_resources(stage, owner_cfg)
                    ).remote(spec, self.writer, self.board, *upstream)
                upstream = [refs[key]]
                self.ref_of[(trial.plan.index, stage)] = refs[key]
            finals[trial.plan.index] = upstream[0]
        return finals

    def wait(self, finals: dict[int, Any]) -> None:
        printer = ProgressPrinter(self.trials)
        pending = list(finals.values())
        while pending:
            _, pending = ray.wait(pending, num_returns=len(pending), timeout=printer.interval_s)
            printer.maybe_print(ray.get(self.board.snapshot.remote()))
        for trial in self.trials:
            for stage in trial.plan.stages:
                try:
                    trial.records[stage] = ray.get(self.ref_of[(trial.plan.index, stage)])
                except Exception as error:  # noqa: BLE001 - a failed stage fails its trial only
                    trial.failed_stage = trial.failed_stage or stage
                    trial.error = trial.error or describe_failure(error)
                    break

    def _log_trial_metrics(self, trial: Trial) -> None:
        """Copy stage results onto the trial run, where the dashboard compares trials:
        evaluation curves at their LDM steps (Fig. 6), then the final values."""
        summary: dict[str, float] = {}
        curve_keys: set[str] = set()
        for record in trial.records.values():
            for point in record.get("curve", []):
                self._call("log_metrics", trial.run_id, point["metrics"], point["step"])
                curve_keys.update(point["metrics"])
            summary.update(record.get("summary", {}))
        final = {k: v for k, v in summary.items() if k not in curve_keys}
        if final:
            self._call("log_metrics", trial.run_id, final, trial.records.get("ldm", {}).get("step", 0))

    def finish(self) -> int:
        for trial in self.trials:
            self._log_trial_metrics(trial)
            self._call("end_run", trial.run_id, "FAILED" if trial.error else "FINISHED")
        failed = [t for t in self.trials if t.error]
        table = format_summary(self.trials, self.work_dir)
        print(table)
        self._call("log_bytes", self.parent_run, table.encode(), "summary.txt")
        report_dir = self.work_dir / "reports" / self.sweep_id
        for path in build_report(TrackingStore(self.uri), self.experiment, self.parent_run, report_dir):
            self._call("log_artifact", self.parent_run, str(path), "report")
        failures = ray.get(self.writer.write_failures.remote())
        if failures:
            print(f"warning: {len(failures)} MLflow writes failed, first: {failures[0]}", file=sys.stderr)
        self._call("end_run", self.parent_run, "FAILED" if failed else "FINISHED")
        print(f"report: {report_dir}\nMLflow: mlflow ui --backend-store-uri {redact_text(self.uri)}")
        return 1 if failed else 0

    def run(self) -> int:
        self.prepare()
        try:
            ray_init(self.cluster.address, num_cpus=self.cluster.num_cpus, num_gpus=self.cluster.num_gpus,
                     object_store_memory=self.cluster.object_store_memory)
        except ValueError as error:  # resources given while RAY_ADDRESS joins a cluster
            raise SweepSetupError(str(error)) from None
        check_workers()
        self.writer = start_writer(self.uri)
        self.board = RemoteProgressBoard.remote()
        self.ref_of: dict[tuple[int, str], Any] = {}
        owners = self.open_runs()
        try:
            self.wait(self.submit(owners))
        except KeyboardInterrupt:
            print("\ninterrupted: finished stages are kept; rerun the same command to resume",
                  file=sys.stderr)
            unfinished = [run for key, run in self.stage_runs.items()
                          if read_record(stage_dir(self.work_dir, owners[key][0], key)) is None]
            for run_id in [self.parent_run, *(t.run_id for t in self.trials), *unfinished]:
                self._call("end_run", run_id, "KILLED")
            raise
        return self.finish()


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def run_plans(plans: Sequence[TrialPlan]) -> int:
    """Execute a validated sweep; returns the exit code (non-zero if any trial failed)."""
    started = time.time()
    signal.signal(signal.SIGTERM, _interrupt)  # `kill PID` stops as cleanly as Ctrl-C
    try:
        code = SweepRunner(plans).run()
    except SweepSetupError as error:
        print(f"cannot start the sweep: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    print(f"sweep finished in {time.time() - started:.0f} s")
    return code
