"""Run a validated sweep as a Ray stage graph: the sweep's composition root.

Order matters: everything that can fail cheaply (data manifests, tracking store) is
checked before Ray starts; MLflow runs are opened (or reopened, on a relaunch) by the
driver through the single writer actor; each unique stage key becomes one Ray task,
so trials sharing a first stage wait on the same task.
"""

from __future__ import annotations

import getpass
import shlex
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

import ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy
import yaml
from omegaconf import OmegaConf

from evaluation.identity import identity_tag
from hydra_plugins.ldm_platform.work_dir_check import unwritable_work_dir
from platform.cluster import check_cluster_store, check_workers, joined_address, ray_init
from platform.config.schema import Stage
from platform.config.semantics import FIELDS, OPERATIONAL
from platform.dashboard import DEFAULT_DASHBOARD, runs_view_url
from platform.orchestration.keys import TrialKeys, digest, trial_keys
from platform.orchestration.naming import swept_keys
from platform.orchestration.order import ldm_work, submission_order
from platform.orchestration.ownership import LEASE_TAG, DriverLease, close_orphaned_runs, has_record
from platform.orchestration.plan import TrialPlan
from platform.orchestration.progress import RemoteProgressBoard
from platform.orchestration.provenance import git_commit
from platform.orchestration.records import stage_dir
from platform.orchestration.reuse import decide
from platform.orchestration.display import REFRESH_S, make_display
from platform.orchestration.render import format_summary
from platform.orchestration.stage_functions import StageFunction
from platform.orchestration.signals import EXIT_INTERRUPTED, stop_on_signals
from platform.orchestration.stage_task import StageSpec, describe_failure, gate, remote_execute_stage
from platform.orchestration.spool import spool_dir
from platform.orchestration.writer import TrackingWriter, start_writer
from platform.report import build_report
from platform.training.paths import with_absolute_paths
from platform.redaction import redact, redact_override, redact_text
from platform.tracking import STALE_TAG, TrackingStore, TrackingUnavailable, flatten_config, resolve_tracking_uri


# What the dashboard view shows: the comparable numbers, and for a swept config group the
# params that tell its options apart.
VIEW_METRICS = ("eval/fid", "eval/kid", "eval/precision", "eval/recall", "eval/n", "rec/rfid",
                "perf/train_img_per_s", "perf/sample_img_per_s")
GROUP_PARAMS = {"first_stage": ("first_stage.f", "first_stage.regularizer")}
_STORE_KEYS = ("experiment=", "paths.", "tracking")


# What the driver was doing when the store failed (``SweepRunner.phase``), and what a
# rerun then has to do.
PHASES = {
    "open": ("opening the sweep's runs", "nothing was trained"),
    "finish": ("recording the sweep's results",
               "finished stages are kept and reused, not retrained; the rerun records them"),
}
EVAL_TASK_RETRIES = 1  # evaluation restarts from scratch: one more try, then the trial fails
DRAIN_TIMEOUT_S = 120.0  # at the end, how long spooled writes may wait for the store


class SweepSetupError(RuntimeError):
    """Something outside the config (data, tracking, cluster) stops the sweep from starting."""


@dataclass
class Trial:
    plan: TrialPlan
    cfg: dict[str, Any]  # resolved, absolute paths
    keys: dict[str, Optional[str]] = field(default_factory=dict)
    dataset_ids: dict[str, str] = field(default_factory=dict)
    identity: Optional[TrialKeys] = None
    run_id: str = ""
    records: dict[str, dict[str, Any]] = field(default_factory=dict)
    error: Optional[str] = None
    failed_stage: Optional[str] = None


def _trial_keys(trial: Trial) -> TrialKeys:
    from evaluation.assets import AssetUnavailable
    from platform.data.manifest import DataError

    try:
        return trial_keys(trial.cfg, trial.plan.stages)
    except DataError as error:
        raise SweepSetupError(f"{error} (for Fashion-MNIST: `make data`)") from None
    except AssetUnavailable as error:
        raise SweepSetupError(f"evaluation needs the Inception weights: {error}") from None


def defining_overrides(overrides: Sequence[str]) -> list[str]:
    """The overrides that define a sweep: all but those of operational fields, so moving
    ``paths.work_dir``, another tracking URI or ``sweep.rerun`` keeps the same sweep run."""
    return [o for o in overrides if FIELDS.get(o.lstrip("+~").split("=", 1)[0]) != OPERATIONAL]


def refuse_collapsed_trials(trials: Sequence[Trial]) -> None:
    """Two trials whose stages all share keys would produce the same numbers: the axis that
    separates them only changes operational settings. Refuse before anything starts."""
    seen: dict[tuple, Trial] = {}
    for trial in trials:
        signature = tuple(trial.keys[stage] for stage in trial.plan.stages)
        other = seen.setdefault(signature, trial)
        if other is not trial:
            a, b = set(other.plan.overrides), set(trial.plan.overrides)
            differ = " vs ".join(" ".join(sorted(side)) or "(defaults)" for side in (a - b, b - a))
            raise SweepSetupError(
                f"trials {other.plan.index} and {trial.plan.index} differ only in settings that do not change "
                f"any result ({differ}): they would be the same run. Drop that sweep axis, or sweep a field "
                f"that platform/config/semantics.py classifies as semantic.")


def source_tags(commit: str) -> dict[str, str]:
    """MLflow's own source tags (the Source and User columns); the commit without ``-dirty``."""
    tags = {"mlflow.source.name": "platform/sweep.py", "mlflow.source.type": "LOCAL",
            "mlflow.user": getpass.getuser()}
    if commit != "unknown":
        tags["mlflow.source.git.commit"] = commit.removesuffix("-dirty")
    return tags


def _devices(stage: str, cfg: dict[str, Any]) -> float:
    if stage == Stage.eval.value:
        return max(1, cfg["eval"]["num_workers"])
    return cfg[stage]["train"]["num_workers"]


def _on_ray_train(stage: str, cfg: dict[str, Any]) -> bool:
    return stage != Stage.eval.value and (cfg[stage]["train"]["num_workers"] > 1 or cfg[stage]["train"]["use_gpu"])


def _resources(stage: str, cfg: dict[str, Any]) -> dict[str, float]:
    """Ray resources of a stage task. Training on several workers or a GPU goes through
    Ray Train, whose workers hold the resources, so the orchestrating task holds none."""
    if stage == Stage.eval.value:
        workers, gpus = cfg["eval"]["num_workers"], cfg["eval"]["gpus_per_worker"]
        return {"num_cpus": 0} if workers > 1 else {"num_cpus": 1, "num_gpus": gpus}
    return {"num_cpus": 0} if _on_ray_train(stage, cfg) else {"num_cpus": 1}


def _demand(stage: str, cfg: dict[str, Any]) -> dict[str, float]:
    """Total CPUs/GPUs a stage needs at once (its Ray Train workers or eval actors)."""
    if stage == Stage.eval.value:
        gpus_each = cfg["eval"]["gpus_per_worker"]
    else:
        gpus_each = 1.0 if cfg[stage]["train"]["use_gpu"] else 0.0
    count = _devices(stage, cfg)
    return {"GPU": count * gpus_each} if gpus_each else {"CPU": count}


def check_feasible(trials: Sequence[Trial], total: dict[str, float]) -> None:
    """Refuse stages that ask for more CPUs/GPUs than the whole cluster has (Ray would wait
    for them forever); raises ``SweepSetupError`` naming the trial, stage and setting."""
    for trial in trials:
        for stage in trial.plan.stages:
            for resource, amount in _demand(stage, trial.cfg).items():
                if amount > total.get(resource, 0.0):
                    setting = ("eval.num_workers / eval.gpus_per_worker" if stage == Stage.eval.value
                               else f"{stage}.train.num_workers / {stage}.train.use_gpu")
                    raise SweepSetupError(
                        f"trial {trial.plan.index}: {stage} needs {amount:g} {resource} but the Ray cluster has "
                        f"{total.get(resource, 0.0):g}; lower {setting} or use a cluster with more {resource}s")


def _task_options(stage: str, cfg: dict[str, Any], driver_node: str) -> dict[str, Any]:
    """Retries (and placement) of a stage task whose worker or node died; an exception the
    stage raised is never retried.

    One budget of restarts per stage, ``train.max_failures``, so retries never multiply:
    a stage on Ray Train restarts its worker group there (each restart resumes from the
    latest checkpoint), and its orchestrating task (no resources of its own) is pinned to
    the driver's node and not retried: that node going down ends the sweep anyway. A
    single-process stage is the task itself: Ray retries it on any node, and it resumes
    the same way. Evaluation starts from scratch: one more try.
    """
    if stage == Stage.eval.value:
        return {"max_retries": EVAL_TASK_RETRIES}
    if _on_ray_train(stage, cfg):
        return {"max_retries": 0,
                "scheduling_strategy": NodeAffinitySchedulingStrategy(node_id=driver_node, soft=False)}
    return {"max_retries": cfg[stage]["train"]["max_failures"]}


class SweepRunner:
    """Opens the runs, submits the graph, waits, summarises."""

    phase = "open"  # a key of PHASES: what the driver is doing with the store

    def __init__(self, plans: Sequence[TrialPlan],
                 stage_functions: Optional[Mapping[str, StageFunction]] = None) -> None:
        """``stage_functions`` replaces stages' functions by name (orchestration tests); the
        real ones (``stage_functions.STAGE_FUNCTIONS``) otherwise."""
        self.stage_functions = dict(stage_functions or {})
        first = plans[0].cfg
        self.experiment = first.tracking.experiment_name or first.experiment.name
        # Absolute paths: Ray workers start in a copy of the repo, not here.
        self.trials = [Trial(plan, OmegaConf.to_container(with_absolute_paths(plan.cfg))) for plan in plans]
        self.work_dir = Path(self.trials[0].cfg["paths"]["work_dir"])
        self.uri = resolve_tracking_uri(first.tracking.uri, self.work_dir)
        self.cluster = first.cluster
        self.sweep_id = digest([self.experiment, [defining_overrides(p.overrides) for p in plans]])
        self.commit = git_commit()
        self.source_tags = source_tags(self.commit)

    # -- before Ray ---------------------------------------------------------------
    def prepare(self) -> None:
        try:
            check_cluster_store(joined_address(self.cluster.address), self.uri)
        except ValueError as error:
            raise SweepSetupError(str(error)) from None
        for trial in self.trials:
            weights = trial.cfg["eval"]["inception_weights"]
            if Stage.eval.value in trial.plan.stages and weights and not Path(weights).is_file():
                raise SweepSetupError(f"eval.inception_weights={weights} is not a file; give the path of the FID "
                                      "Inception weights, or leave it unset to use the resolver "
                                      "(`python -m evaluation assets` prepares them offline)")
            trial.identity = _trial_keys(trial)
            trial.keys, trial.dataset_ids = trial.identity.keys, trial.identity.dataset_ids
        refuse_collapsed_trials(self.trials)
        problem = unwritable_work_dir(self.work_dir)  # also checked before Hydra writes (its callback)
        if problem:
            raise SweepSetupError(problem)
        store = TrackingStore(self.uri)
        try:  # creates the SQLite store and experiment once, here, before any worker
            self.experiment_id = store.ensure_experiment(self.experiment, artifact_root=self.work_dir / "mlartifacts")
            orphans = close_orphaned_runs(store, self.experiment_id, self.work_dir)
        except TrackingUnavailable as error:
            raise SweepSetupError(str(error)) from None
        except Exception as error:  # noqa: BLE001 - the store answered the first call, then failed
            raise SweepSetupError(str(store.unusable(error))) from None
        if orphans:
            counts = {status: list(orphans.values()).count(status) for status in set(orphans.values())}
            print("runs left RUNNING by a stopped sweep were ended: "
                  + ", ".join(f"{n} {status}" for status, n in sorted(counts.items())), flush=True)
        # Which results are reused (verified now) and which run (again): before Ray starts.
        chains = [[(stage, t.keys[stage]) for stage in t.plan.stages] for t in self.trials]
        self.decisions = decide(self.work_dir, chains, self.trials[0].cfg["sweep"]["rerun"])

    # -- runs ---------------------------------------------------------------------
    def _call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        """A synchronous store call through the writer. Writes never raise (they spool);
        reads such as ``open_run`` raise ``TrackingUnavailable`` when the store is down."""
        try:
            return self._ask("call", method, *args, **kwargs)
        except Exception as error:  # noqa: BLE001 - narrowed on the next line
            if not isinstance(error, ray.exceptions.RayTaskError) and not isinstance(self.writer, TrackingWriter):
                raise
            cause = getattr(error, "cause", None) or error
            doing, after = PHASES[self.phase]
            raise TrackingUnavailable(redact_text(
                f"MLflow tracking store {self.uri} failed while {doing}: "
                f"{str(cause).splitlines()[0][:300]}; rerun the same command when it is back ({after})")) from None

    def _ask(self, method: str, *args: Any, **kwargs: Any) -> Any:
        """A writer method's answer: the actor's, or that of the writer in this process when
        every result was reused and Ray was not started."""
        if isinstance(self.writer, TrackingWriter):
            return getattr(self.writer, method)(*args, **kwargs)
        return ray.get(getattr(self.writer, method).remote(*args, **kwargs))

    def _open(self, name: str, identity: dict[str, str], parent: Optional[str] = None, **info: Any) -> str:
        """Reopen the run that ``identity`` names (a relaunch) or start it, then (re)set the
        descriptive ``info`` tags. Only identity finds a run: a rerun after a new commit
        must reopen, not duplicate."""
        run_id = self._call("open_run", self.experiment_id, name, identity, parent)
        tags = {"git_commit": self.commit, "sweep_id": self.sweep_id, LEASE_TAG: str(self.lease.path),
                **self.source_tags,
                **{k: str(v) for k, v in info.items()}}
        self._call("set_tags", run_id, tags)
        return run_id

    def _log_datasets(self, run_id: str, trial: Trial) -> None:
        """The trial's shards as MLflow dataset inputs: digest = the manifest's content id."""
        from platform.data.manifest import load_manifest

        for split, key in (("train", "train_shards"), ("eval", "eval_shards")):
            location = trial.cfg["data"][key]
            manifest = load_manifest(location)
            self._call("log_dataset", run_id, name=manifest.name, digest=trial.dataset_ids[split],
                       source=str(location), context=split, num_samples=manifest.num_samples)

    def open_runs(self) -> dict[str, tuple[str, Trial]]:
        """Sweep, trial and stage runs; returns stage key -> (stage, first trial needing it).

        Trial runs are top-level, so the dashboard's default table lists the trials with
        their metrics; each links its sweep run (``sweep_run_id``), which holds the figures,
        and the trial's stage runs are nested under it (a stage shared by several trials
        sits under the first of them and is linked from the others).
        """
        trial0 = self.trials[0]
        self.parent_run = self._open(f"sweep {self.experiment} {self.sweep_id[:8]}",
                                     {"kind": "sweep", "sweep_id": self.sweep_id},
                                     scale=trial0.cfg["scale"]["name"], trials=len(self.trials))
        overrides = {f"trial.{t.plan.index}": " ".join(map(redact_override, t.plan.overrides))
                     for t in self.trials}
        self._call("log_params", self.parent_run, overrides)
        owners = self.owners
        for trial in self.trials:
            config_hash = digest(trial.keys)
            # A result computed again (sweep.rerun, a failed verification) is a new fact: the
            # trial gets a new run, and the old one keeps its history, marked stale below.
            attempts = {stage: self.decisions[trial.keys[stage]].attempt for stage in trial.plan.stages}
            trial_key = digest([trial.keys, attempts]) if any(attempts.values()) else config_hash
            trial.run_id = self._open(
                trial.plan.name, {"kind": "trial", "sweep_id": self.sweep_id, "trial_key": trial_key},
                sweep_run_id=self.parent_run, trial_index=trial.plan.index,
                config_hash=config_hash, dataset_id=trial.dataset_ids["train"])
            self._call("log_params", trial.run_id, flatten_config(trial.cfg))
            self._call("log_bytes", trial.run_id, yaml.safe_dump(redact(trial.cfg), sort_keys=False).encode(),
                       "config.yaml")
            self._log_datasets(trial.run_id, trial)
            for stage in trial.plan.stages:
                key = trial.keys[stage]
                owners.setdefault(key, (stage, trial))
        self._mark_stale_trials()
        for key, (stage, trial) in owners.items():
            decision = self.decisions[key]
            if not decision.run:  # finished and verified (maybe by another sweep): link it
                self.stage_runs[key] = decision.record["run_id"]
                continue
            identity = {"kind": "stage", "stage_key": key, "attempt": str(decision.attempt)}
            self.stage_runs[key] = self._open(f"{stage} {trial.plan.name}", identity, trial.run_id,
                                              stage=stage, config_hash=key)
            self._call("log_params", self.stage_runs[key],
                       flatten_config(trial.identity.payloads[stage]["config"]))
            self._log_datasets(self.stage_runs[key], trial)
            if decision.replaced_run:
                self._call("set_tags", decision.replaced_run, {STALE_TAG: "true", "replaced_by": self.stage_runs[key],
                                                                "stale_reason": decision.reason[:500]})
        self._share_view()
        for trial in self.trials:
            links = {f"{stage}_run_id": self.stage_runs[trial.keys[stage]] for stage in trial.plan.stages}
            links.update({f"{stage}_key": trial.keys[stage] for stage in trial.plan.stages})
            self._call("set_tags", trial.run_id, links)
        return owners

    def _mark_stale_trials(self) -> None:
        """Trial runs of this sweep whose stage results are no longer the sweep's (the config or
        the code changed since, or a stage ran again) keep their history but are tagged stale:
        reports skip them."""
        current = {trial.run_id for trial in self.trials}
        for run in self._call("runs", self.experiment, f"tags.kind = 'trial' and tags.sweep_id = '{self.sweep_id}'"):
            if run.info.run_id not in current and run.data.tags.get(STALE_TAG) != "true":
                self._call("set_tags", run.info.run_id, {STALE_TAG: "true",
                                                         "stale_reason": "its stage results left the sweep"})

    def _share_view(self) -> None:
        """The dashboard view of this sweep: its trials ranked by FID, swept params and the
        comparable metrics as columns (opened by ``runs_view_url(..., share_key=sweep_id)``)."""
        params = []
        for key in swept_keys([t.plan.overrides for t in self.trials]):
            params += list(GROUP_PARAMS.get(key, (key,)))
        self._call("share_runs_view", self.experiment_id, self.sweep_id,
                   search_filter=f"tags.kind = 'trial' and tags.sweep_id = '{self.sweep_id}'",
                   order_by_metric="eval/fid", metrics=list(VIEW_METRICS), params=params)

    # -- the graph ----------------------------------------------------------------
    def submit(self, owners: dict[str, tuple[str, Trial]]) -> dict[int, Any]:
        """One task per unique key; returns trial index -> ref of its last stage.

        Depth-first: the p-th trial to start waits (a Ray dependency, :func:`gate`) until
        p - W + 1 of the trials started before it have finished, W = ``sweep.
        max_concurrent_trials`` or else the cluster's CPUs, so at most W trials are in
        progress, a freed slot takes the next trial whichever trial freed it, and a trial's
        downstream stages never queue behind other trials' upstream work. Each trial runs
        its stages in order, so W trials keep W slots busy. They start in :func:`platform.orchestration.
        order.submission_order`: the W - 1 costliest first, then the rest cheapest first.
        """
        refs: dict[str, Any] = {}
        finals: dict[int, Any] = {}
        driver_node = ray.get_runtime_context().get_node_id()
        window = (self.trials[0].cfg["sweep"]["max_concurrent_trials"]
                  or max(1, int(ray.cluster_resources().get("CPU", 1))))
        costs = [ldm_work(trial.cfg, [stage for stage in trial.plan.stages  # what it computes itself
                                      if owners[trial.keys[stage]][1] is trial and self.decisions[trial.keys[stage]].run])
                 for trial in self.trials]
        ordered = [self.trials[i] for i in submission_order(costs, window)]
        for position, trial in enumerate(ordered):
            started = [finals[earlier.plan.index] for earlier in ordered[:position]]
            after = gate(started, position - window + 1) if position >= window else None
            upstream: list[Any] = []
            for stage in trial.plan.stages:
                key = trial.keys[stage]
                if key not in refs:
                    owner_cfg = owners[key][1].cfg
                    owner = owners[key][1].identity
                    spec = StageSpec(stage, key, owner_cfg, str(stage_dir(self.work_dir, stage, key)),
                                     self.stage_runs[key], _devices(stage, owner_cfg), commit=self.commit,
                                     payload=owner.payloads[stage], fingerprint=owner.fingerprints[stage],
                                     function=self.stage_functions.get(stage))
                    refs[key] = remote_execute_stage.options(
                        name=f"{stage}:{key[:8]}", retry_exceptions=False,
                        **_task_options(stage, owner_cfg, driver_node), **_resources(stage, owner_cfg)
                    ).remote(spec, self.writer, self.board, *upstream, after=after)
                    after = None  # later stages wait on this one anyway
                upstream = [refs[key]]
                self.ref_of[(trial.plan.index, stage)] = refs[key]
            finals[trial.plan.index] = upstream[0]
        return finals

    def wait(self, finals: dict[int, Any]) -> None:
        display = make_display(self.trials)
        started = time.time()
        trial_of = {ref: index for index, ref in finals.items()}
        pending = list(finals.values())
        try:
            while pending:
                ready, pending = ray.wait(pending, num_returns=1, timeout=REFRESH_S)
                if ready and self.first_complete is None:
                    self.first_complete = (trial_of[ready[0]], time.time() - started)
                display.update(ray.get(self.board.snapshot.remote()))
                self.writer.replay.remote()  # an outage ends while stages are quiet, too
        finally:
            display.close()
        self.all_complete_s = time.time() - started
        for trial in self.trials:
            for stage in trial.plan.stages:
                try:
                    trial.records[stage] = ray.get(self.ref_of[(trial.plan.index, stage)])
                except Exception as error:  # noqa: BLE001 - a failed stage fails its trial only
                    trial.failed_stage = trial.failed_stage or stage
                    trial.error = trial.error or describe_failure(error, stage)
                    break

    def _log_trial_results(self, trial: Trial) -> None:
        """Copy stage results onto the trial run, where the dashboard compares trials:
        evaluation curves at their LDM steps (Fig. 6), the final values, the sample grid of
        every evaluated step, and links to the checkpoints the numbers come from. A result is
        copied once: the tag ``copied.<stage>`` names the stage run it came from, so a rerun
        that reuses it logs nothing (MLflow would append a duplicate point)."""
        copied = self._call("run_tags", trial.run_id) or {}
        step = trial.records.get("ldm", {}).get("step", 0)
        tags: dict[str, str] = {}
        for stage, record in trial.records.items():
            origin = f"{record['run_id']}@{record.get('finished_at', '')}"
            provenance = record.get("provenance", {})
            tags[f"{stage}_commit"] = provenance.get("commit", "unknown")
            if record.get("detector"):  # evaluation: which detector, and the shared identity tags
                evaluated = {"eval.detector_sha256": record["detector"]["sha256"],
                             "eval.weights_source": record["detector"]["source"],
                             **{identity_tag(i): str(s) for i, s in record.get("identities", {}).items()}}
                self._call("set_tags", record["run_id"], evaluated)
                tags.update(evaluated)
            if copied.get(f"copied.{stage}") == origin:
                continue
            curve_keys: set[str] = set()
            for point in record.get("curve", []):
                self._call("log_metrics", trial.run_id, point["metrics"], point["step"], once=False)
                curve_keys.update(point["metrics"])
            final = {k: v for k, v in record.get("summary", {}).items() if k not in curve_keys}
            if final:
                self._call("log_metrics", trial.run_id, final, step, once=False)
            for grid in record.get("grids", []):
                self._call("log_artifact", trial.run_id, str(Path(record["directory"]) / grid), "samples")
            if record.get("checkpoint"):
                tags.update({f"checkpoint.{stage}": record["checkpoint"],
                             f"checkpoint.{stage}.step": str(record.get("step", 0))})
                self._call("link_checkpoint", self.experiment_id, trial.run_id, name=f"{stage} {trial.plan.name}",
                           path=record["checkpoint"], step=int(record.get("step", 0)))
            tags[f"copied.{stage}"] = origin
        self._call("set_tags", trial.run_id, tags)

    def finish(self) -> int:
        self.phase = "finish"
        # Recording reads the store back (copy-once tags): an outage still going on when the
        # last stage ends is waited out first (bounded), as for the final drain below.
        self._ask("drain", DRAIN_TIMEOUT_S)
        for trial in self.trials:
            self._log_trial_results(trial)
            self._end(trial.run_id, "FAILED" if trial.error else "FINISHED")
        failed = [t for t in self.trials if t.error]
        table = format_summary(self.trials, self.work_dir, first_complete=self.first_complete,
                               all_complete_s=self.all_complete_s)
        print(table)
        self._call("log_bytes", self.parent_run, table.encode(), "summary.txt")
        report_dir = self.work_dir / "reports" / self.sweep_id
        self._end(self.parent_run, "FAILED" if failed else "FINISHED")
        if self._ask("drain", DRAIN_TIMEOUT_S) == 0:
            self._report(report_dir)
        failures = self._ask("write_failures")
        if failures:
            print(f"warning: {len(failures)} MLflow writes failed, first: {failures[0]}", file=sys.stderr)
        pending = self._ask("close")
        if pending:
            print(f"warning: the tracking store is still unreachable; {pending} writes are kept in "
                  f"{self._ask('spool_path')} and delivered by the next sweep on this "
                  "store (then run python -m platform.report for the figures)", file=sys.stderr)
        print(self._where(report_dir))
        return 1 if failed else 0

    def _where(self, report_dir: Path) -> str:
        """Where to look next: the report folder, and the dashboard's runs view."""
        # Only the overrides that choose the store and experiment matter to the dashboard.
        common = [o for o in self.trials[0].plan.overrides if o.lstrip("+").startswith(_STORE_KEYS)
                  and all(o in t.plan.overrides for t in self.trials)]
        if self.uri.startswith(("http://", "https://")):
            url = runs_view_url(redact_text(self.uri), self.experiment_id, self.sweep_id)
            return f"report:    {report_dir}\ndashboard: {url}"
        return (f"report:    {report_dir}\n"
                f"dashboard: python -m platform.dashboard {' '.join(shlex.quote(o) for o in common)}\n"
                f"           then open {runs_view_url(DEFAULT_DASHBOARD, self.experiment_id, self.sweep_id)}")

    def _end(self, run_id: str, status: str) -> None:
        self._call("end_run", run_id, status)
        self.closed.add(run_id)

    def stop(self) -> None:
        """After a stop signal: end every run this driver opened and did not end as KILLED
        (a stage that finished keeps FINISHED). Bounded: the tracking store may be down."""
        stages = [run for key, run in self.stage_runs.items()
                  if not has_record(self.work_dir, self.owners[key][0], key, run)]
        opened = [self.parent_run, *(t.run_id for t in self.trials), *stages]
        pending = [run for run in opened if run and run not in self.closed]
        if self.writer is None or not pending:
            return
        if isinstance(self.writer, TrackingWriter):
            for run in pending:
                self._ask("end_run", run, "KILLED")
            return
        refs = [self.writer.call.remote("end_run", run, "KILLED") for run in pending]
        ready, _ = ray.wait(refs, num_returns=len(refs), timeout=60)
        if len(ready) < len(refs):
            print(f"{len(refs) - len(ready)} runs could not be marked KILLED now; the next run of "
                  "any sweep on this store marks them", file=sys.stderr)

    def _report(self, report_dir: Path) -> None:
        """Figures and tables from what MLflow holds; a store failure only skips them."""
        try:
            paths = build_report(TrackingStore(self.uri), self.experiment, self.parent_run, report_dir)
        except Exception as error:  # noqa: BLE001 - the sweep's results are already stored
            print(f"warning: report not built ({redact_text(str(error).splitlines()[0])}); "
                  "run python -m platform.report with the same arguments later", file=sys.stderr)
            return
        for path in paths:
            self._call("log_artifact", self.parent_run, str(path), "report")

    def _reuse_all(self) -> int:
        """Every stage result is finished and verified: nothing is left for Ray, so no cluster
        starts; this process links the runs and copies any result not copied yet."""
        self.writer = TrackingWriter(self.uri, str(spool_dir(self.work_dir, self.uri)))
        self.open_runs()
        display = make_display(self.trials)
        display.update({f"{stage}:{trial.keys[stage]}": {"state": "cached", "since": time.time()}
                        for trial in self.trials for stage in trial.plan.stages})
        display.close()
        for trial in self.trials:
            trial.records = {stage: self.decisions[trial.keys[stage]].record for stage in trial.plan.stages}
        return self.finish()

    def run(self) -> int:
        self.prepare()
        reuse_all = not any(decision.run for decision in self.decisions.values())
        if not reuse_all:
            try:  # stage output goes to each stage's stage.log, not to this screen
                ray_init(self.cluster.address, num_cpus=self.cluster.num_cpus, num_gpus=self.cluster.num_gpus,
                         object_store_memory=self.cluster.object_store_memory, log_to_driver=False)
            except ValueError as error:  # resources given while RAY_ADDRESS joins a cluster
                raise SweepSetupError(str(error)) from None
        self.writer: Any = None
        self.parent_run = ""
        self.stage_runs: dict[str, str] = {}
        self.owners: dict[str, tuple[str, Trial]] = {}
        self.closed: set[str] = set()
        self.phase = "open"
        self.first_complete: Optional[tuple[int, float]] = None  # (trial index, seconds after submission)
        self.all_complete_s: Optional[float] = None
        self.lease = DriverLease(self.work_dir)
        with stop_on_signals() as signals:  # after ray.init, which installs its own SIGTERM handler
            try:
                if reuse_all:
                    return self._reuse_all()
                check_feasible(self.trials, ray.cluster_resources())
                check_workers()
                self.writer = start_writer(self.uri, self.work_dir)
                # On the driver's node, like the writer: the driver asks it for every refresh,
                # and a lost worker node must not take it along.
                self.board = RemoteProgressBoard.options(scheduling_strategy=NodeAffinitySchedulingStrategy(
                    node_id=ray.get_runtime_context().get_node_id(), soft=False)).remote()
                self.ref_of: dict[tuple[int, str], Any] = {}
                self.wait(self.submit(self.open_runs()))
                return self.finish()
            except TrackingUnavailable as error:
                self.stop()
                if self.phase == "open":
                    raise SweepSetupError(str(error)) from None
                print(f"error: {error}", file=sys.stderr)
                return 1
            except KeyboardInterrupt:
                print(f"\n{signals.received}: stopping; finished stages are kept, rerun the same command "
                      "to resume", file=sys.stderr)
                self.stop()
                raise
            finally:
                self.lease.release()


def run_plans(plans: Sequence[TrialPlan]) -> int:
    """Execute a validated sweep; returns the exit code (non-zero if any trial failed)."""
    started = time.time()
    try:
        code = SweepRunner(plans).run()
    except SweepSetupError as error:
        print(f"cannot start the sweep: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    print(f"sweep finished in {time.time() - started:.0f} s")
    return code
