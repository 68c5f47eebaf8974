"""``python -m platform.evaluate [overrides]``: evaluate LDM checkpoints into MLflow.

    python -m platform.evaluate evaluate.checkpoint=runs/stages/ldm/KEY/checkpoints/step-00000030
    python -m platform.evaluate evaluate.stage_key=KEY +experiment=downsample_factor
    python -m platform.evaluate evaluate.run_id=RUN_ID eval.num_samples=5000

Same Hydra config groups as ``platform.sweep``; the current ``eval`` settings are used.
Give exactly one of ``evaluate.checkpoint`` (one checkpoint), ``evaluate.stage_key``
(every checkpoint of an LDM stage) or ``evaluate.run_id`` (every checkpoint of the LDM a
trial run, or an LDM stage run, points at). ``eval/*`` (with N, N_ref and intervals) are
logged at each checkpoint's step on the runs that own the LDM, with the detector hash and
weights source as tags; an evaluation already logged (same identity) is not repeated
unless ``evaluate.force=true``. Checkpoints are only read; training may go on meanwhile.
Exit codes: 0 all evaluated (or already were), 2 bad config or setup, 4 some checkpoint
could not be evaluated (each is listed with the reason).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional, Sequence

from omegaconf import DictConfig

from platform.config.validate import ConfigError, validate_config

EXIT_OK, EXIT_SETUP, EXIT_FAILURES = 0, 2, 4
_CHECKPOINTS = "checkpoints"


def all_checkpoint_dirs(stage_dir: Path) -> list[Path]:
    """Every ``step-*`` directory of an LDM stage, complete or not, oldest first."""
    return sorted((Path(stage_dir) / _CHECKPOINTS).glob("step-*"))


def _targets(cfg: DictConfig, store, experiment: str) -> tuple[list[Path], str]:
    """The checkpoint directories named by ``cfg.evaluate`` and the experiment owning them."""
    from platform.orchestration.records import stage_dir

    chosen = {k: cfg.evaluate[k] for k in ("checkpoint", "stage_key", "run_id") if cfg.evaluate[k]}
    if len(chosen) != 1:
        raise ConfigError("set exactly one of evaluate.checkpoint, evaluate.stage_key, evaluate.run_id "
                          f"(got {', '.join(chosen) or 'none'})")
    if cfg.evaluate.checkpoint:
        path = Path(cfg.evaluate.checkpoint).resolve()
        if not path.is_dir():
            raise ConfigError(f"evaluate.checkpoint={cfg.evaluate.checkpoint}: no such checkpoint directory")
        return [path], experiment
    if cfg.evaluate.run_id:
        run = store.get_run(cfg.evaluate.run_id)
        key = run.data.tags.get("ldm_key") or (run.data.tags.get("stage_key")
                                              if run.data.tags.get("stage") == "ldm" else None)
        if key is None:
            raise ConfigError(f"evaluate.run_id={cfg.evaluate.run_id} is neither a trial run (tag ldm_key) "
                              "nor an LDM stage run")
        experiment = store.experiment_name(run.info.experiment_id)
    else:
        key = cfg.evaluate.stage_key
    directory = stage_dir(cfg.paths.work_dir, "ldm", key)
    found = all_checkpoint_dirs(directory)
    if not found:
        raise ConfigError(f"no LDM checkpoints under {directory / _CHECKPOINTS} (stage key {key})")
    return found, experiment


def run_evaluate(cfg: DictConfig) -> int:
    """Evaluate the checkpoints ``cfg.evaluate`` names; returns the exit code."""
    from platform.checkpoint_eval import EvalContext, evaluate_checkpoint, lease_directory
    from platform.tracking import TrackingStore, TrackingUnavailable, resolve_tracking_uri
    from platform.training.paths import with_absolute_paths

    cfg = with_absolute_paths(cfg)
    work_dir = Path(cfg.paths.work_dir)
    store = TrackingStore(resolve_tracking_uri(cfg.tracking.uri, work_dir))
    try:
        validate_config(cfg)
        checkpoints, experiment = _targets(cfg, store, cfg.tracking.experiment_name or cfg.experiment.name)
        ctx = EvalContext.from_config(cfg)
        store.ensure_experiment(experiment, artifact_root=work_dir / "mlartifacts")
    except (ConfigError, TrackingUnavailable) as error:
        print(f"cannot evaluate: {error}", file=sys.stderr)
        return EXIT_SETUP
    except Exception as error:  # noqa: BLE001 - missing weights or data: the message says how to fix it
        print(f"cannot evaluate: {type(error).__name__}: {error}", file=sys.stderr)
        return EXIT_SETUP
    bad = 0
    for checkpoint in checkpoints:
        outcome = evaluate_checkpoint(ctx, store, experiment, checkpoint, lease_directory(cfg),
                                      force=cfg.evaluate.force)
        shown = " ".join(f"{k.removeprefix('eval/')}={v:.4g}" for k, v in outcome.metrics.items()
                         if k.count("/") == 1 and k.startswith("eval/") and k[5:] in ("fid", "kid", "precision",
                                                                                          "recall", "n"))
        print(f"{outcome.status:9s} step {outcome.step:>8d}  {checkpoint}  {shown or outcome.reason}", flush=True)
        bad += outcome.status in ("failed", "skipped")
    return EXIT_FAILURES if bad else EXIT_OK


def main(argv: Optional[Sequence[str]] = None) -> int:
    from platform.config.compose import run_command_line

    return run_command_line(__doc__, lambda cfg, _: run_evaluate(cfg), argv)


if __name__ == "__main__":
    sys.exit(main())
