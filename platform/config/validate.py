"""Cross-field and mode checks run on every composed config before any work starts.

Types and required keys are checked by the schema at composition; this module adds what
a type cannot say (f is a power of two, channel_mult matches f, modes are known), so a
bad sweep fails before Ray or MLflow is touched, with the key and allowed values named.
"""

from __future__ import annotations

import math
import os
import re
from enum import Enum
from typing import Any, Iterable, Optional

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from platform.config import schema
from platform.config.ranges import POSITIVE_INT_LISTS, RANGES, SIZE_LISTS

ALLOWED_F = (1, 2, 4, 8, 16, 32)

# Mode fields: dotted key -> the enum naming their allowed values.
_MODES: dict[str, type[Enum]] = {
    "scale.name": schema.Scale,
    "first_stage.regularizer": schema.Regularizer,
    "data.on_error": schema.OnError,
    "ldm.conditioning": schema.Conditioning,
    "ldm.cond.text_encoder": schema.TextEncoder,
    "ldm.diffusion.prediction": schema.Prediction,
    "eval.sampler": schema.Sampler,
    "eval.checkpoints": schema.EvalCheckpoints,
    "eval.reference_split": schema.ReferenceSplit,
    "ldm.diffusion.beta_schedule": schema.BetaSchedule,
    "first_stage.train.precision": schema.Precision,
    "ldm.train.precision": schema.Precision,
    "nightly.policy": schema.NightlyPolicy,
}
_KNOWN_METRICS = ("fid", "kid", "pr", "is")
_KEY_PREFIX = re.compile(r"[0-9a-f]{4,16}")


class ConfigError(ValueError):
    """A composed config that cannot run; the message names the key and the fix."""


def _get(cfg: DictConfig, key: str) -> Any:
    try:
        return OmegaConf.select(cfg, key, throw_on_missing=True)
    except OmegaConfBaseException as error:  # missing value or broken interpolation
        raise ConfigError(f"{key}: {error}".splitlines()[0]) from error


def _allowed(values: Iterable[object]) -> str:
    return ", ".join(str(v) for v in values)


def validate_config(cfg: DictConfig) -> None:
    """Raise ``ConfigError`` naming the first bad key of ``cfg``; return None if it can run."""
    for key, enum in _MODES.items():
        value = _get(cfg, key)
        allowed = [member.value for member in enum]
        if value not in allowed:
            raise ConfigError(f"{key}={value!r} is not one of: {_allowed(allowed)}")
    _check_known_keys(cfg)
    for key, allowed_range in RANGES.items():
        value = _get(cfg, key)
        if not allowed_range.accepts(value):
            raise ConfigError(f"{key}={value!r} must be {allowed_range.describe()}")
    for key in POSITIVE_INT_LISTS + SIZE_LISTS:
        values = list(_get(cfg, key))
        if any(isinstance(v, bool) or not isinstance(v, int) or v <= 0 for v in values) or (
                not values and key in POSITIVE_INT_LISTS):
            raise ConfigError(f"{key}={values} must be a {'non-empty ' if key in POSITIVE_INT_LISTS else ''}"
                              "list of positive integers")
    if cfg.ldm.diffusion.beta_end <= cfg.ldm.diffusion.beta_start:
        raise ConfigError(f"ldm.diffusion.beta_end={cfg.ldm.diffusion.beta_end} must exceed "
                          f"ldm.diffusion.beta_start={cfg.ldm.diffusion.beta_start}")

    fs = cfg.first_stage
    if fs.f not in ALLOWED_F:
        raise ConfigError(f"first_stage.f={fs.f!r} must be a power of two up to 32: {_allowed(ALLOWED_F)}")
    levels = int(math.log2(fs.f)) + 1
    if len(fs.channel_mult) != levels:
        raise ConfigError(
            f"first_stage.channel_mult={list(fs.channel_mult)} has {len(fs.channel_mult)} levels; "
            f"f={fs.f} needs log2(f)+1 = {levels}"
        )
    if (fs.f == 1) != (fs.regularizer == schema.Regularizer.none.value):
        raise ConfigError(
            f"first_stage.regularizer={fs.regularizer!r} with f={fs.f}: "
            "f=1 is the untrained identity (regularizer none) and only f=1 may use it"
        )
    if fs.regularizer == schema.Regularizer.vq.value and fs.codebook_size <= 0:
        raise ConfigError(f"first_stage.codebook_size={fs.codebook_size} must be positive for VQ")
    if cfg.data.resolution % fs.f:
        raise ConfigError(
            f"data.resolution={cfg.data.resolution} is not divisible by first_stage.f={fs.f}"
        )
    unknown = [m for m in cfg.eval.metrics if m not in _KNOWN_METRICS]
    if unknown:
        raise ConfigError(f"eval.metrics has {unknown}; allowed: {_allowed(_KNOWN_METRICS)}")
    chain = cfg.ldm.diffusion.num_steps  # counts beyond the schedule would index past t = T - 1
    bad_steps = [s for s in cfg.eval.sampling_steps if s > chain]
    if bad_steps:
        raise ConfigError(f"eval.sampling_steps={list(cfg.eval.sampling_steps)} must be integers from 1 to "
                          f"ldm.diffusion.num_steps={chain} (the full chain); bad: {bad_steps}")
    stages = [s.value for s in schema.Stage]
    _check_stages(list(cfg.sweep.stages), stages)
    bad_rerun = [r for r in cfg.sweep.rerun if r not in stages and not _KEY_PREFIX.fullmatch(str(r))]
    if bad_rerun:
        raise ConfigError(f"sweep.rerun has {bad_rerun}: each entry is a stage ({_allowed(stages)}) "
                          "or a stage key prefix (4 to 16 hex digits)")
    if cfg.stage is not None and cfg.stage not in stages:
        raise ConfigError(f"stage={cfg.stage!r} is not one of: {_allowed(stages)}")
    _check_cluster(cfg)
    # Resolve every interpolation now, so a broken one fails here and not on a worker.
    try:
        OmegaConf.to_container(cfg, resolve=True)
    except OmegaConfBaseException as error:
        raise ConfigError(str(error).splitlines()[0]) from error


def _check_known_keys(cfg: DictConfig) -> None:
    """Refuse keys the schema does not have (``+ldm.train.warmup_steps=1000`` would be
    ignored by the code, yet look like a setting that was used)."""
    from platform.config.semantics import FIELDS, config_leaves

    try:
        plain = OmegaConf.to_container(cfg, resolve=True)  # an interpolated section is a mapping then
    except OmegaConfBaseException:
        return  # the final resolution check names the broken interpolation
    unknown = sorted(set(config_leaves(plain)) - set(FIELDS))
    if unknown:
        raise ConfigError(f"{', '.join(unknown)}: not a setting of this platform (added with '+'?); "
                          "remove it, or see `python -m platform.sweep --cfg job` for the settings that exist")


def _check_stages(chosen: list[str], stages: list[str]) -> None:
    """``sweep.stages``: known names, pipeline order, no repeats, and each stage's input present."""
    bad = [s for s in chosen if s not in stages]
    if bad:
        raise ConfigError(f"sweep.stages has {bad}; allowed: {_allowed(stages)}")
    if not chosen or chosen != sorted(set(chosen), key=stages.index):
        raise ConfigError(f"sweep.stages={chosen} must list stages once each, in pipeline order: {_allowed(stages)}")
    for stage, needs in zip(stages[1:], stages[:-1]):
        if stage in chosen and needs not in chosen:
            raise ConfigError(f"sweep.stages={chosen}: {stage} needs {needs} (cached results are reused, "
                              f"so listing it costs nothing when it is done)")


def is_local_store(tracking_uri: Optional[str]) -> bool:
    """True for tracking stores that are a file on the driver's machine (SQLite, file, a path)."""
    return tracking_uri is None or "://" not in tracking_uri or tracking_uri.startswith(("sqlite:", "file:"))


def _check_cluster(cfg: DictConfig) -> None:
    """An address is required by cluster=remote; joining a cluster excludes local sizing
    and a tracking store that is a file on the driver's machine (the writer runs on the
    cluster and would write to a different file, or none)."""
    address = cfg.cluster.address
    if cfg.cluster.kind not in ("local", "remote"):
        raise ConfigError(f"cluster.kind={cfg.cluster.kind!r} is not one of: local, remote")
    if cfg.cluster.kind == "remote" and not (address or os.environ.get("RAY_ADDRESS")):
        raise ConfigError("cluster=remote needs cluster.address=HOST:6379 (on a cluster node) or "
                          "ray://HOST:10001 (Ray client), or RAY_ADDRESS; for a new local cluster use cluster=local")
    if not address:
        return
    sized = [f"cluster.{k}={cfg.cluster[k]}" for k in ("num_cpus", "num_gpus", "object_store_memory")
             if cfg.cluster[k] is not None]
    if sized:
        raise ConfigError(f"{', '.join(sized)} sizes a local cluster; cluster.address={address} joins an "
                          "existing one with its own resources: drop them")
    if is_local_store(cfg.tracking.uri):
        raise ConfigError(
            f"cluster.address={address} with the local tracking store "
            f"{cfg.tracking.uri or '(SQLite under paths.work_dir)'}: the cluster's writer cannot share a "
            "file on this machine; start `mlflow server --host 0.0.0.0 --port PORT` where every node "
            "reaches it and add tracking=server tracking.uri=http://HOST:PORT")


def latent_shape(cfg: DictConfig) -> tuple[int, int, int]:
    """(C, H/f, W/f) of the first stage's latent for this config's data."""
    size = cfg.data.resolution // cfg.first_stage.f
    return (cfg.first_stage.latent_channels, size, size)
