"""Which config fields determine a stage's result: the one table behind stage keys.

Every field of the schema is listed once in ``FIELDS`` with the stages whose *numbers* it
changes (SEMANTIC for those stages) or with no stage at all (OPERATIONAL: log and
checkpoint cadence, worker counts that only change speed, display names, paths,
tracking, cluster, sweep control). A field is listed under a stage only when that stage
reads it itself: what a stage takes from an upstream stage enters its key through the
upstream key (or a checkpoint's content id), not through the upstream's fields.
``tests/platform/config/test_semantics.py`` fails when a schema field is missing here.
"""

from __future__ import annotations

import dataclasses
import typing
from typing import Any, Iterator, Mapping

from omegaconf import DictConfig, OmegaConf

from platform.config.schema import Config, Stage

FIRST_STAGE, LDM, EVAL = Stage.first_stage.value, Stage.ldm.value, Stage.eval.value
TRAINING = (FIRST_STAGE, LDM)
OPERATIONAL: tuple[str, ...] = ()


def _train_fields(stage: str) -> dict[str, tuple[str, ...]]:
    """``TrainConfig`` under ``<stage>.train``: the budget and numerics are semantic."""
    own = (stage,)
    return {
        f"{stage}.train.steps": own,
        f"{stage}.train.batch_size": own,
        f"{stage}.train.grad_accum": own,
        f"{stage}.train.lr": own,
        f"{stage}.train.scale_lr": own,
        f"{stage}.train.ckpt_every": OPERATIONAL,  # resume is exact, so cadence changes nothing
        f"{stage}.train.log_every": OPERATIONAL,
        f"{stage}.train.check_finite_every": OPERATIONAL,  # only decides when a diverged run stops
        f"{stage}.train.num_workers": own,  # DDP ranks: global batch, lr scaling, data split
        f"{stage}.train.use_gpu": own,  # autocast on GPU, fp32 on CPU
        f"{stage}.train.precision": own,
        f"{stage}.train.max_failures": OPERATIONAL,  # restarts resume exactly
    }


FIELDS: dict[str, tuple[str, ...]] = {
    # data: the shards' *content* enters keys as dataset ids; their paths do not.
    "data.name": OPERATIONAL,
    "data.train_shards": OPERATIONAL,
    "data.eval_shards": OPERATIONAL,
    "data.resolution": TRAINING,
    "data.channels": TRAINING,
    "data.num_classes": (LDM,),  # size of the class embedding (and its null class)
    "data.shuffle_buffer": TRAINING,
    "data.loader_workers": TRAINING,  # each loader worker shuffles its own share of shards
    "data.on_error": TRAINING,  # "skip" trains on fewer samples than "raise" would allow
    # first stage (paper §3.1, Tab. 8)
    "first_stage.name": OPERATIONAL,
    "first_stage.regularizer": (FIRST_STAGE,),
    "first_stage.f": (FIRST_STAGE, LDM),  # the LDM's latent size; also keys the f = 1 identity
    "first_stage.latent_channels": (FIRST_STAGE, LDM),
    "first_stage.base_channels": (FIRST_STAGE,),
    "first_stage.channel_mult": (FIRST_STAGE,),
    "first_stage.num_res_blocks": (FIRST_STAGE,),
    "first_stage.attn_resolutions": (FIRST_STAGE,),
    "first_stage.codebook_size": (FIRST_STAGE,),
    "first_stage.kl_weight": (FIRST_STAGE,),
    "first_stage.learn_logvar": (FIRST_STAGE,),
    "first_stage.codebook_weight": (FIRST_STAGE,),
    "first_stage.vq_beta": (FIRST_STAGE,),
    "first_stage.perceptual_weight": (FIRST_STAGE,),
    "first_stage.disc_weight": (FIRST_STAGE,),
    "first_stage.disc_start": (FIRST_STAGE,),
    "first_stage.disc_layers": (FIRST_STAGE,),
    "first_stage.disc_channels": (FIRST_STAGE,),
    "first_stage.rfid": (FIRST_STAGE,),  # which reconstruction metrics its result holds
    **_train_fields(FIRST_STAGE),
    # LDM (paper §3.2-3.3, Tab. 13)
    "ldm.unet.channels": (LDM,),
    "ldm.unet.channel_mult": (LDM,),
    "ldm.unet.num_res_blocks": (LDM,),
    "ldm.unet.attention_resolutions": (LDM,),
    "ldm.unet.num_heads": (LDM,),
    "ldm.unet.transformer_depth": (LDM,),
    "ldm.unet.context_dim": (LDM,),
    "ldm.conditioning": (LDM,),
    "ldm.cond.text_encoder": (LDM,),
    "ldm.cond.text_layers": (LDM,),
    "ldm.cond.max_text_tokens": (LDM,),
    "ldm.cond.cfg_dropout": (LDM,),
    "ldm.cond.sr_factor": (LDM,),
    "ldm.diffusion.num_steps": (LDM,),
    "ldm.diffusion.beta_schedule": (LDM,),
    "ldm.diffusion.beta_start": (LDM,),
    "ldm.diffusion.beta_end": (LDM,),
    "ldm.diffusion.prediction": (LDM,),
    "ldm.ema_decay": (LDM,),
    "ldm.latent_cache": (LDM,),  # cached latents are one posterior draw, not one per step
    "ldm.sample_every": OPERATIONAL,  # grids use their own per-sample generators
    **_train_fields(LDM),
    "ldm.tab13": OPERATIONAL,  # presets; scale=paper copies the chosen column into unet/train
    # evaluation (DESIGN.md §2): what is sampled, how many, and how it is scored
    "eval.metrics": (EVAL,),
    "eval.num_samples": (EVAL,),
    "eval.reference_split": (EVAL,),
    "eval.sampler": (EVAL,),
    "eval.sampling_steps": (EVAL,),
    "eval.checkpoints": (EVAL,),
    "eval.eta": (EVAL,),
    "eval.guidance_scale": (EVAL,),
    "eval.batch_size": OPERATIONAL,  # sample i has its own generator: batching changes nothing
    "eval.num_workers": OPERATIONAL,  # likewise for the split of indices over actors
    "eval.gpus_per_worker": OPERATIONAL,
    "eval.kid_subset_size": (EVAL,),
    "eval.kid_subsets": (EVAL,),
    "eval.pr_k": (EVAL,),
    "eval.uncertainty_repeats": (EVAL,),
    "eval.reference_seed": (EVAL,),
    "eval.seed": (EVAL,),
    "eval.inception_weights": OPERATIONAL,  # a path: the weights' sha256 enters the fingerprint
    # where and how things run, and what they are called
    "tracking.uri": OPERATIONAL,
    "tracking.experiment_name": OPERATIONAL,
    "cluster.kind": OPERATIONAL,
    "cluster.address": OPERATIONAL,
    "cluster.num_cpus": OPERATIONAL,
    "cluster.num_gpus": OPERATIONAL,
    "cluster.object_store_memory": OPERATIONAL,
    "scale.name": OPERATIONAL,  # the values a scale sets are classified where they land
    "scale.description": OPERATIONAL,
    "experiment.name": OPERATIONAL,
    "experiment.description": OPERATIONAL,
    "sweep.dry_run": OPERATIONAL,
    "sweep.stages": OPERATIONAL,
    "sweep.max_concurrent_trials": OPERATIONAL,
    "sweep.rerun": OPERATIONAL,
    # nightly job and platform.evaluate: which checkpoints, when, compared with what;
    # how a checkpoint is evaluated is eval.* (its identity), never these.
    **{f"nightly.{name}": OPERATIONAL for name in (
        "experiments", "policy", "always_final", "max_checkpoints", "max_minutes", "since", "tags",
        "regression_metrics", "champion.model_alias", "champion.run_tag", "run_experiment", "state_dir", "nice")},
    **{f"evaluate.{name}": OPERATIONAL for name in ("checkpoint", "stage_key", "run_id", "force")},
    "paths.data_dir": OPERATIONAL,
    "paths.work_dir": OPERATIONAL,
    "seed": TRAINING,  # weight init and data order; evaluation has eval.seed
    "stage": OPERATIONAL,
}


def _is_schema(tp: Any) -> bool:
    return isinstance(tp, type) and dataclasses.is_dataclass(tp)


def schema_field_types(schema: type = Config, prefix: str = "") -> dict[str, Any]:
    """Dotted name -> type of every leaf of a schema dataclass (dicts and lists are leaves)."""
    hints = typing.get_type_hints(schema)
    found: dict[str, Any] = {}
    for item in dataclasses.fields(schema):
        name = f"{prefix}{item.name}"
        if _is_schema(hints[item.name]):
            found.update(schema_field_types(hints[item.name], f"{name}."))
        else:
            found[name] = hints[item.name]
    return found


def schema_fields(schema: type = Config) -> Iterator[str]:
    """Dotted names of every leaf of a schema dataclass (dicts and lists are leaves)."""
    yield from schema_field_types(schema)


def config_leaves(cfg: Mapping[str, Any], prefix: str = "") -> Iterator[str]:
    """Dotted names of the leaves of a config, descending only where the schema nests.

    A name that is neither a schema leaf nor under one (e.g. ``ldm.train.warmup_steps``
    added with ``+``) is yielded as found, so callers can refuse it.
    """
    for key, value in cfg.items():
        name = f"{prefix}{key}"
        if name == "hydra":
            continue
        if name not in FIELDS and isinstance(value, Mapping):
            yield from config_leaves(value, f"{name}.")
        else:
            yield name


def _plain(cfg: Mapping[str, Any]) -> Mapping[str, Any]:
    if isinstance(cfg, DictConfig):
        return OmegaConf.to_container(cfg, resolve=True)
    return cfg


def semantic_config(cfg: Mapping[str, Any], stage: str) -> dict[str, Any]:
    """The part of a resolved config that determines ``stage``'s own result.

    Args:
        cfg: a composed config (``DictConfig``, resolved here) or its plain container.
        stage: ``first_stage``, ``ldm`` or ``eval``.

    Returns:
        A nested dict (same layout as ``cfg``) holding only the fields ``FIELDS``
        classifies as semantic for ``stage``. A field absent from ``cfg`` (a config saved
        before the field existed) is left out. Upstream stages are not included: their
        results enter through their keys or checkpoint content ids.

    Raises:
        ValueError: ``stage`` is not a stage name.
    """
    stages = [s.value for s in Stage]
    if stage not in stages:
        raise ValueError(f"unknown stage {stage!r}; one of: {', '.join(stages)}")
    plain = _plain(cfg)
    picked: dict[str, Any] = {}
    for name, users in FIELDS.items():
        if stage not in users:
            continue
        *parents, leaf = name.split(".")
        source: Any = plain
        for part in parents:
            source = source.get(part) if isinstance(source, Mapping) else None
        if not isinstance(source, Mapping) or leaf not in source:
            continue
        target = picked
        for part in parents:
            target = target.setdefault(part, {})
        target[leaf] = source[leaf]
    return picked
