"""Stop a diverged run at the step it diverged, instead of letting it finish "ok"."""

from __future__ import annotations

import math
from typing import Mapping

import torch


class NonFiniteLossError(FloatingPointError):
    """A training loss became NaN or infinite; the message names the stage, value and step."""


def check_finite(stage: str, losses: Mapping[str, float | torch.Tensor], step: int, every: int) -> None:
    """Raise ``NonFiniteLossError`` if any of ``losses`` is not finite at ``step``.

    Args:
        stage: ``first_stage`` or ``ldm`` (named in the message with the setting to change).
        losses: this step's losses (tensors are read, which waits for the device).
        step: the 1-based step just taken.
        every: check on steps divisible by this (``<stage>.train.check_finite_every``);
            0 never checks. Reading a GPU loss synchronises the device, hence the knob.
    """
    if every <= 0 or step % every:
        return
    bad = {name: float(value) for name, value in losses.items() if not math.isfinite(float(value))}
    if bad:
        shown = ", ".join(f"{name}={value}" for name, value in bad.items())
        window = "" if every == 1 else f" (checked every {every} steps: it diverged after step {step - every})"
        raise NonFiniteLossError(
            f"{stage} training diverged: {shown} at step {step}{window}. The checkpoints before it are kept; "
            f"lower {stage}.train.lr or use {stage}.train.precision=fp32, then relaunch "
            f"(set {stage}.train.check_finite_every=0 to train on regardless).")
