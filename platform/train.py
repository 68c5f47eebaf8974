"""``python -m platform.train stage=STAGE [overrides]``: train one stage of one config.

    python -m platform.train stage=first_stage first_stage=kl_f8 scale=smoke
    python -m platform.train stage=ldm first_stage=kl_f8 scale=smoke

Same Hydra configs as ``platform.sweep``, and the same content-addressed stage
directory (``paths.work_dir/stages/<stage>/<key>``), so relaunching resumes from the
newest checkpoint and a later sweep reuses the result. Progress is printed; metrics go
to ``<stage dir>/report`` (no tracking server needed).
"""

from __future__ import annotations

import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf

from platform.config.schema import Regularizer, Stage
from platform.config.store import CONF_DIR, register_configs
from platform.config.validate import ConfigError, validate_config
from platform.reporting import LocalReporter
from platform.training.paths import with_absolute_paths

register_configs()


def _stage_dirs(cfg: DictConfig) -> dict[str, Path | None]:
    from platform.orchestration.keys import dataset_ids, stage_keys
    from platform.orchestration.records import stage_dir

    container = OmegaConf.to_container(cfg, resolve=True)
    keys = stage_keys(container, dataset_ids(container["data"]))
    return {stage: stage_dir(cfg.paths.work_dir, stage, key) if key else None for stage, key in keys.items()}


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
    dirs = _stage_dirs(cfg)
    identity = cfg.first_stage.regularizer == Regularizer.none.value
    if cfg.stage == Stage.first_stage.value:
        if identity:
            print("first_stage=identity (f=1) needs no training; nothing to do")
            return 0
        from platform.first_stage.train import train_first_stage

        run_dir = dirs[Stage.first_stage.value]
        print(f"[platform.train] first stage {cfg.first_stage.name} -> {run_dir}", flush=True)
        result = train_first_stage(cfg, run_dir, LocalReporter(run_dir / "report"))
        print(f"[platform.train] done: step {result.step}, scale_factor {result.scale_factor:.5g}, "
              f"checkpoint {result.checkpoint}")
        print("  " + " ".join(f"{k}={v:.4g}" for k, v in result.metrics.items()))
        return 0

    first_ckpt = None
    if not identity:
        from platform.first_stage.train import read_result

        done = read_result(dirs[Stage.first_stage.value])
        if done is None:
            print(f"the first stage {cfg.first_stage.name} is not trained yet: run python -m platform.train "
                  "stage=first_stage with the same overrides first", file=sys.stderr)
            return 2
        first_ckpt = done.checkpoint
    from platform.ldm.train import train_ldm

    run_dir = dirs[Stage.ldm.value]
    print(f"[platform.train] LDM over {cfg.first_stage.name} -> {run_dir}", flush=True)
    result = train_ldm(cfg, run_dir, LocalReporter(run_dir / "report"), first_stage_checkpoint=first_ckpt)
    print(f"[platform.train] done: step {result.step}, checkpoint {result.checkpoint}")
    return 0


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="config")
def main(cfg: DictConfig) -> None:
    exit_code = run_stage(cfg)
    if exit_code:
        raise SystemExit(exit_code)


if __name__ == "__main__":
    main()
