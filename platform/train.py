"""``python -m platform.train stage=STAGE [overrides]``: train one stage of one config.

    python -m platform.train stage=first_stage first_stage=kl_f8 scale=smoke
    python -m platform.train stage=ldm first_stage=kl_f8 scale=smoke

Same Hydra configs as ``platform.sweep``, and the same content-addressed stage
directory (``paths.work_dir/stages/<stage>/<key>``), so relaunching resumes from the
newest checkpoint and a later sweep reuses the result. Metrics go to the stage's MLflow
run (``tracking.uri``, else ``$MLFLOW_TRACKING_URI``, else ``paths.work_dir/mlflow.db``),
found and named exactly as a sweep's stage run, and the stage's record is written as a
sweep writes it.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import hydra
from omegaconf import DictConfig, OmegaConf

from platform.config.schema import Regularizer, Stage
from platform.config.store import CONF_DIR, register_configs
from platform.config.validate import ConfigError, validate_config
from platform.training.paths import with_absolute_paths

register_configs()


def _keys(cfg: DictConfig) -> Any:
    from platform.orchestration.keys import trial_keys

    return trial_keys(OmegaConf.to_container(cfg, resolve=True), [cfg.stage])


def _open_stage_run(cfg: DictConfig, stage: str, key: str, attempt: int, params: dict[str, Any]) -> tuple[Any, str]:
    """The stage's MLflow run, found or created exactly as a sweep's stage run is."""
    from platform.orchestration.provenance import git_commit
    from platform.tracking import TrackingStore, flatten_config, resolve_tracking_uri

    store = TrackingStore(resolve_tracking_uri(cfg.tracking.uri, Path(cfg.paths.work_dir)))
    experiment = store.ensure_experiment(cfg.tracking.experiment_name or cfg.experiment.name,
                                         artifact_root=Path(cfg.paths.work_dir) / "mlartifacts")
    run_id = store.open_run(experiment, f"{stage}-{key[:8]}",
                            {"kind": "stage", "stage_key": key, "attempt": str(attempt)})
    store.set_tags(run_id, {"stage": stage, "config_hash": key, "git_commit": git_commit(),
                            "launched_by": "platform.train"})
    store.log_params(run_id, flatten_config(params))
    return store, run_id


def _train(cfg: DictConfig, keys: Any, upstream: list[dict[str, Any]]) -> int:
    """Train ``cfg.stage`` into its stage directory under its lock, logged to MLflow, and
    write the same record a sweep writes (a later sweep then reuses it as is)."""
    from platform.orchestration.provenance import git_commit
    from platform.orchestration.records import (
        build_record, check_record, discard_stage, discarded_count, read_record, stage_dir, stage_lock, write_record)
    from platform.orchestration.stage_functions import STAGE_FUNCTIONS
    from platform.tracking import MlflowReporter

    stage, key = cfg.stage, keys.keys[cfg.stage]
    directory = stage_dir(cfg.paths.work_dir, stage, key)
    with stage_lock(directory):
        record, problem = check_record(directory)
        if record is not None and problem is None:
            print(f"[platform.train] {stage} {key} is already trained: {record['checkpoint']}")
            return 0
        if problem:
            print(f"[platform.train] {stage} {key}: {problem}; training it again", file=sys.stderr)
            discard_stage(directory, problem)
        store, run_id = _open_stage_run(cfg, stage, key, discarded_count(directory), keys.payloads[stage]["config"])
        print(f"[platform.train] {stage} -> {directory} (MLflow run {run_id})", flush=True)
        started = time.time()
        try:
            result = STAGE_FUNCTIONS[stage](cfg, directory, MlflowReporter(store, run_id), upstream)
        except BaseException:
            store.end_run(run_id, "FAILED")
            raise
        devices = cfg[stage].train.num_workers
        write_record(directory, build_record(
            directory, stage=stage, key=key, run_id=run_id, result=result, started=started, devices=devices,
            upstream=upstream, commit=git_commit(), payload=keys.payloads[stage], fingerprint=keys.fingerprints[stage]))
        store.end_run(run_id, "FINISHED")
    record = read_record(directory)
    print(f"[platform.train] done: step {record['step']}, checkpoint {record['checkpoint']}")
    shown = record.get("summary", {})
    if shown:
        print("  " + " ".join(f"{k}={v:.4g}" for k, v in shown.items()))
    return 0


def run_stage(cfg: DictConfig) -> int:
    """Validate ``cfg`` and train ``cfg.stage``; returns the process exit code."""
    try:
        validate_config(cfg)
        if cfg.stage not in (Stage.first_stage.value, Stage.ldm.value):
            raise ConfigError(f"stage={cfg.stage!r}: python -m platform.train trains stage=first_stage or stage=ldm")
    except ConfigError as error:
        print(f"config error: {error}", file=sys.stderr)
        return 2
    cfg = with_absolute_paths(cfg)
    identity = cfg.first_stage.regularizer == Regularizer.none.value
    if cfg.stage == Stage.first_stage.value and identity:
        print("first_stage=identity (f=1) needs no training; nothing to do")
        return 0
    from platform.orchestration.records import check_record, stage_dir

    keys = _keys(cfg)
    upstream: list[dict[str, Any]] = []
    if cfg.stage == Stage.ldm.value and not identity:
        first, problem = check_record(stage_dir(cfg.paths.work_dir, Stage.first_stage.value,
                                                keys.keys[Stage.first_stage.value]))
        if first is None or problem:
            why = f" ({problem})" if problem else ""
            print(f"the first stage {cfg.first_stage.name} is not trained yet{why}: run python -m platform.train "
                  "stage=first_stage with the same overrides first", file=sys.stderr)
            return 2
        upstream = [first]
    return _train(cfg, keys, upstream)


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="train")
def main(cfg: DictConfig) -> None:
    exit_code = run_stage(cfg)
    if exit_code:
        raise SystemExit(exit_code)


if __name__ == "__main__":
    main()
