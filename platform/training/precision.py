"""Mixed precision: bf16 autocast on GPU, plain fp32 on CPU (``TrainConfig.precision``)."""

from __future__ import annotations

import contextlib
from typing import ContextManager

import torch

PRECISIONS = ("bf16", "fp32")


def autocast(device: torch.device, precision: str) -> ContextManager:
    """The autocast context for one forward pass.

    bf16 needs no loss scaler (same exponent range as fp32), which is why it is the only
    reduced precision offered. CPU runs fp32 whatever ``precision`` says: CPU bf16
    autocast is slower than fp32 on most hosts.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"train.precision={precision!r} is not one of {PRECISIONS}")
    if device.type == "cuda" and precision == "bf16":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()
