"""Evaluate LDM checkpoints into MLflow, each evaluation identity once.

Shared by ``python -m platform.evaluate`` and ``python -m platform.nightly``. A checkpoint
is evaluated only when it is complete (its ``digest.json`` verifies), only when no run of
the experiment carries its evaluation identity tag yet, and only under a lease named by
that identity, so two jobs started at once never evaluate it twice. Checkpoints are read,
never written, and the training stage's lock is never taken: a run keeps training while
its checkpoints are evaluated. Metrics go to the runs that own the LDM (the trial runs
pointing at its stage key; for an LDM trained with ``platform.train``, the LDM stage run
a sweep would reuse) at the checkpoint's training step, so FID-vs-steps curves grow.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Literal, Optional, Sequence

from omegaconf import DictConfig

from evaluation.assets import ResolvedAsset, resolve_inception
from evaluation.detector import detector_hash
from evaluation.identity import eval_settings, evaluation_identity, identity_tag
from platform.checkpoint import CheckpointError, verify_checkpoint
from platform.leases import holder, lease
from platform.orchestration.stage_functions import checkpoint_step
from platform.tracking import TrackingStore

Status = Literal["evaluated", "done", "busy", "deferred", "skipped", "failed"]
STAGE_LDM = "ldm"


def stage_directory(checkpoint: Path) -> Path:
    """``<work_dir>/stages/ldm/<key>`` of ``<...>/<key>/checkpoints/step-N``."""
    return Path(checkpoint).resolve().parent.parent


def lease_directory(cfg: DictConfig) -> Path:
    """Where evaluation leases live: ``nightly.state_dir`` (default ``<paths.work_dir>/nightly``)/leases."""
    return Path(cfg.nightly.state_dir or Path(cfg.paths.work_dir) / "nightly").resolve() / "leases"


def checkpoint_identities(cfg: DictConfig, checkpoint_id: str, detector_sha256: str) -> dict[int, str]:
    """Sampling steps -> evaluation identity of one checkpoint, for each ``eval.sampling_steps``.

    The conventions every evaluator shares (``evaluation.identity``): the reference id is
    the reference shards' content id, N_ref what the workers use (min(N, reference size);
    0 when no metric needs a reference), the seeds ``[eval.seed]``.

    Raises:
        platform.data.manifest.DataError: the reference shards have no manifest.
    """
    from platform.data.manifest import load_manifest

    ev = cfg.eval
    reference = load_manifest(cfg.data.train_shards if ev.reference_split == "train" else cfg.data.eval_shards)
    needs_reference = any(m in ev.metrics for m in ("fid", "kid", "pr"))
    num_ref = min(int(ev.num_samples), reference.num_samples) if needs_reference else 0
    return {int(steps): evaluation_identity(
        checkpoint_id=checkpoint_id, eval_settings=eval_settings(cfg, int(steps)), detector_sha256=detector_sha256,
        reference_id=reference.dataset_id, num_samples=int(ev.num_samples), num_ref=num_ref, seeds=[int(ev.seed)])
        for steps in ev.sampling_steps}


@dataclass(frozen=True)
class EvalContext:
    """What every checkpoint evaluated by one job shares: the config and the detector.

    Attributes:
        cfg: resolved config with absolute paths; its ``eval`` and ``data`` sections say
            how to sample and what to compare with.
        asset: the Inception weights (their sha256 enters the identity).
        cache_dir: where reference statistics are cached.
    """

    cfg: DictConfig
    asset: ResolvedAsset
    cache_dir: Path

    @classmethod
    def from_config(cls, cfg: DictConfig) -> "EvalContext":
        """Resolve the detector ``cfg`` names.

        Raises:
            evaluation.assets.AssetUnavailable: no Inception weights (says how to get them).
        """
        return cls(cfg, resolve_inception(cfg.eval.inception_weights), Path(cfg.paths.work_dir) / "cache")

    def identities(self, checkpoint_id: str) -> dict[int, str]:
        return checkpoint_identities(self.cfg, checkpoint_id, self.asset.sha256)


@dataclass
class Outcome:
    """What happened to one checkpoint.

    ``status``: ``evaluated``; ``done`` (its identity was already logged); ``busy``
    (another job holds its lease); ``deferred`` (not started: over the job's budget);
    ``skipped`` (incomplete or does not verify); ``failed`` (the evaluation or the
    logging raised; ``reason`` says what).
    """

    checkpoint: Path
    step: int
    status: Status
    reason: str = ""
    run_ids: list[str] = field(default_factory=list)
    metrics: dict[str, float] = field(default_factory=dict)
    started_ms: int = 0  # before its metrics were logged: earlier entries are baselines
    seconds: float = 0.0


def checkpoint_metrics(results: Sequence) -> dict[str, float]:
    """MLflow scalars of one checkpoint's ``evaluate_ldm`` results, as the sweep names them.

    Per setting S (e.g. ``ddim50``): ``eval/S/<metric>`` (with ``_std``/``_lo``/``_hi``,
    ``n``, ``n_ref``) and ``perf/sample_img_per_s/S``; the first setting is also the
    headline ``eval/<metric>`` and ``perf/sample_img_per_s``.
    """
    metrics: dict[str, float] = {}
    for rank, result in enumerate(results):
        setting = f"{result.settings.sampler}{result.settings.steps}"
        metrics.update(result.report.scalars(prefix=f"eval/{setting}/"))
        metrics[f"perf/sample_img_per_s/{setting}"] = result.images_per_s
        if rank == 0:
            metrics.update(result.report.scalars(prefix="eval/"))
            metrics["perf/sample_img_per_s"] = result.images_per_s
    return metrics


def owning_runs(store: TrackingStore, experiment: str, stage_dir: Path) -> list[str]:
    """Runs of ``experiment`` that own the LDM in ``stage_dir``, creating one if none does.

    The trial runs whose ``ldm_key`` tag names it (the dashboard compares those); else
    the LDM stage run of its current attempt, found by the identity tags that a sweep and
    ``platform.train`` open it with, or started with them (they then reuse it).
    """
    from platform.orchestration.records import discarded_count

    key = stage_dir.name
    trials = [run for run in store.runs(experiment, f"tags.kind = 'trial' and tags.ldm_key = '{key}'")
              if run.data.tags.get("stale") != "true"]  # a trial whose keys left its sweep
    if trials:
        return [run.info.run_id for run in trials]
    experiment_id = store.ensure_experiment(experiment, artifact_root=stage_dir.parents[2] / "mlartifacts")
    identity = {"kind": "stage", "stage_key": key, "attempt": str(discarded_count(stage_dir))}
    run_id = store.find_run(experiment_id, identity)
    if run_id is None:
        run_id = store.start_run(experiment_id, f"{STAGE_LDM}-{key[:8]}", identity)
        store.set_tags(run_id, {"stage": STAGE_LDM, "config_hash": key})
        store.end_run(run_id, "FINISHED")  # it holds evaluations only; training reopens it
    return [run_id]


def logged_identities(store: TrackingStore, experiment: str, identities: dict[int, str], step: int) -> bool:
    """Whether some run of ``experiment`` already holds every one of these evaluations."""
    return all(store.runs(experiment, f"tags.`{identity_tag(i)}` = '{step}'") for i in identities.values())


def evaluate_checkpoint(
    ctx: EvalContext,
    store: TrackingStore,
    experiment: str,
    checkpoint: Path,
    lease_dir: Path,
    *,
    force: bool = False,
    may_start: Optional[Callable[[], bool]] = None,
) -> Outcome:
    """Verify, skip if already logged, else evaluate ``checkpoint`` and log it; never raises.

    Args:
        experiment: the MLflow experiment whose runs own the LDM.
        lease_dir: lease files shared by every job that may evaluate the same checkpoints.
        force: evaluate even when the identity is already logged (still under the lease).
        may_start: asked before an evaluation starts; False defers it (a budget).
    """
    from platform.ldm.evaluate import evaluate_ldm

    checkpoint = Path(checkpoint).resolve()
    step, started = checkpoint_step(checkpoint), time.time()
    try:
        checkpoint_id = verify_checkpoint(checkpoint)
    except CheckpointError as error:
        return Outcome(checkpoint, step, "skipped", error.reason)
    try:
        identities = ctx.identities(checkpoint_id)
        first = next(iter(identities.values()))
        if not force and logged_identities(store, experiment, identities, step):
            return Outcome(checkpoint, step, "done", "already evaluated")
        if may_start is not None and not may_start():
            return Outcome(checkpoint, step, "deferred", "over tonight's budget")
        with lease(lease_dir, first) as held:
            if not held:
                return Outcome(checkpoint, step, "busy",
                               f"being evaluated by another job (pid {holder(lease_dir, first)})")
            # Another job may have finished it between the first look and the lease.
            if not force and logged_identities(store, experiment, identities, step):
                return Outcome(checkpoint, step, "done", "already evaluated")
            owners = owning_runs(store, experiment, stage_directory(checkpoint))
            results = evaluate_ldm(checkpoint, ctx.cfg, cache_dir=ctx.cache_dir)
            used = results[0].report.info.get("detector") if results else None
            if used != detector_hash(ctx.asset):
                raise RuntimeError(f"the evaluation used detector {used}, expected {detector_hash(ctx.asset)}")
            metrics = checkpoint_metrics(results)
            started_ms = int(time.time() * 1000)
            tags = {identity_tag(i): str(step) for i in identities.values()}
            tags.update({"eval.detector": detector_hash(ctx.asset), "eval.detector_sha256": ctx.asset.sha256,
                         "eval.weights_source": ctx.asset.source})
            for run_id in owners:
                store.log_metrics(run_id, metrics, step)
                store.set_tags(run_id, tags)  # after the metrics: the tag means "logged"
            return Outcome(checkpoint, step, "evaluated", run_ids=owners, metrics=metrics,
                           started_ms=started_ms, seconds=time.time() - started)
    except Exception as error:  # noqa: BLE001 - one checkpoint's failure is reported, not raised
        first_line = (str(error).strip().splitlines() or [""])[0]
        return Outcome(checkpoint, step, "failed", f"{type(error).__name__}: {first_line}"[:300],
                       seconds=time.time() - started)
