"""The allowed range of every numeric config field, in one table.

``validate_config`` checks each against the composed config, so ``ldm.train.log_every=0``
fails at validation with the key and the range, not as a division by zero after the
upstream stages trained. ``tests/platform/config/test_validate.py`` fails when a numeric
schema field has no entry here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Optional


@dataclass(frozen=True)
class Range:
    """``low <= value <= high`` (or ``<`` where open); ``integer``: whole numbers only;
    ``optional``: None is allowed (the field then means "not set")."""

    low: Optional[float] = None
    high: Optional[float] = None
    low_open: bool = False
    high_open: bool = False
    integer: bool = False
    optional: bool = False

    def accepts(self, value: Any) -> bool:
        if value is None:
            return self.optional
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            return False
        if self.integer and not isinstance(value, int):
            return False
        if self.low is not None and (value < self.low or (self.low_open and value == self.low)):
            return False
        return self.high is None or (value < self.high or (not self.high_open and value == self.high))

    def describe(self) -> str:
        kind = "an integer" if self.integer else "a number"
        bounds = []
        if self.low is not None:
            bounds.append(f"{'>' if self.low_open else '>='} {self.low:g}")
        if self.high is not None:
            bounds.append(f"{'<' if self.high_open else '<='} {self.high:g}")
        text = f"{kind} {' and '.join(bounds)}" if bounds else kind
        return text + (" (or null)" if self.optional else "")


POSITIVE_INT = Range(1, integer=True)
COUNT = Range(0, integer=True)  # zero allowed (0 = off / none)
POSITIVE = Range(0, low_open=True)
NON_NEGATIVE = Range(0)
PROBABILITY = Range(0, 1, high_open=True)
UNIT = Range(0, 1)


def _train(stage: str) -> dict[str, Range]:
    return {f"{stage}.train.steps": POSITIVE_INT, f"{stage}.train.batch_size": POSITIVE_INT,
            f"{stage}.train.grad_accum": POSITIVE_INT, f"{stage}.train.lr": POSITIVE,
            f"{stage}.train.ckpt_every": POSITIVE_INT, f"{stage}.train.log_every": POSITIVE_INT,
            f"{stage}.train.num_workers": POSITIVE_INT, f"{stage}.train.check_finite_every": COUNT,
            f"{stage}.train.max_failures": COUNT}


RANGES: dict[str, Range] = {
    "data.resolution": POSITIVE_INT,
    "data.channels": Range(1, 4, integer=True),
    "data.num_classes": POSITIVE_INT,
    "data.shuffle_buffer": COUNT,
    "data.loader_workers": COUNT,
    "first_stage.f": POSITIVE_INT,  # and a power of two up to 32: checked in validate
    "first_stage.latent_channels": POSITIVE_INT,
    "first_stage.base_channels": POSITIVE_INT,
    "first_stage.num_res_blocks": POSITIVE_INT,
    "first_stage.codebook_size": COUNT,
    "first_stage.kl_weight": NON_NEGATIVE,
    "first_stage.codebook_weight": NON_NEGATIVE,
    "first_stage.vq_beta": NON_NEGATIVE,
    "first_stage.perceptual_weight": NON_NEGATIVE,
    "first_stage.disc_weight": NON_NEGATIVE,
    "first_stage.disc_start": COUNT,
    "first_stage.disc_layers": POSITIVE_INT,
    "first_stage.disc_channels": POSITIVE_INT,
    **_train("first_stage"),
    "ldm.unet.channels": POSITIVE_INT,
    "ldm.unet.num_res_blocks": POSITIVE_INT,
    "ldm.unet.num_heads": POSITIVE_INT,
    "ldm.unet.transformer_depth": POSITIVE_INT,
    "ldm.unet.context_dim": POSITIVE_INT,
    "ldm.cond.text_layers": POSITIVE_INT,
    "ldm.cond.max_text_tokens": POSITIVE_INT,
    "ldm.cond.cfg_dropout": PROBABILITY,
    "ldm.cond.sr_factor": POSITIVE_INT,
    "ldm.diffusion.num_steps": POSITIVE_INT,
    "ldm.diffusion.beta_start": Range(0, 1, low_open=True, high_open=True),
    "ldm.diffusion.beta_end": Range(0, 1, low_open=True, high_open=True),  # and > beta_start
    "ldm.ema_decay": UNIT,
    "ldm.sample_every": COUNT,  # 0: only at the end
    **_train("ldm"),
    "eval.num_samples": POSITIVE_INT,
    "eval.eta": UNIT,
    "eval.guidance_scale": NON_NEGATIVE,
    "eval.batch_size": POSITIVE_INT,
    "eval.num_workers": POSITIVE_INT,
    "eval.gpus_per_worker": NON_NEGATIVE,
    "eval.kid_subset_size": POSITIVE_INT,
    "eval.kid_subsets": POSITIVE_INT,
    "eval.pr_k": POSITIVE_INT,
    "eval.uncertainty_repeats": Range(2, integer=True),  # a spread needs two subsets
    "eval.reference_seed": COUNT,
    "eval.seed": COUNT,
    "cluster.num_cpus": Range(1, integer=True, optional=True),
    "cluster.num_gpus": Range(0, integer=True, optional=True),
    "cluster.object_store_memory": Range(1, integer=True, optional=True),
    "sweep.max_concurrent_trials": COUNT,
    "nightly.max_checkpoints": COUNT,  # 0: no limit
    "nightly.max_minutes": NON_NEGATIVE,  # 0: no limit
    "nightly.nice": Range(0, 19, integer=True),
    "seed": COUNT,
}
# Lists of sizes: every element a positive integer; the first group needs at least one.
POSITIVE_INT_LISTS = ("first_stage.channel_mult", "ldm.unet.channel_mult", "eval.sampling_steps")
SIZE_LISTS = ("first_stage.attn_resolutions", "ldm.unet.attention_resolutions")
