"""Absolute paths for runs: Ray workers start in the job's ``working_dir`` copy, not here."""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig, OmegaConf, open_dict

_PATH_KEYS = ("paths.data_dir", "paths.work_dir", "data.train_shards", "data.eval_shards")


def with_absolute_paths(cfg: DictConfig, base: Path | str | None = None) -> DictConfig:
    """A resolved copy of ``cfg`` whose path keys are absolute (relative ones join ``base``).

    Args:
        cfg: a composed config; interpolations (``${paths.data_dir}/...``) are resolved.
        base: the launch directory; default the current working directory.
    """
    base = Path(base or Path.cwd()).resolve()
    out = OmegaConf.create(OmegaConf.to_container(cfg, resolve=True))
    with open_dict(out):
        for key in _PATH_KEYS:
            value = OmegaConf.select(out, key)
            if isinstance(value, str) and "://" not in value and not Path(value).is_absolute():
                OmegaConf.update(out, key, str(base / value))
    return out
