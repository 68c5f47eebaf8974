"""DDP for the training loops; a no-op without a process group (single process, tests)."""

from __future__ import annotations

import contextlib
from typing import ContextManager

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from platform.distributed import is_distributed


def wrap_ddp(module: nn.Module, device: torch.device) -> nn.Module:
    """Move ``module`` to ``device`` and wrap it in DDP when a process group exists.

    The process group comes from Ray Train's ``TorchTrainer`` (gloo on CPU, NCCL on
    GPU). Parameters and buffers are broadcast from rank 0 on construction.
    """
    module = module.to(device)
    if not is_distributed():
        return module
    ids = [device.index] if device.type == "cuda" else None
    return DistributedDataParallel(module, device_ids=ids)


def unwrap(module: nn.Module) -> nn.Module:
    """The module inside DDP (for state dicts and direct calls)."""
    return module.module if isinstance(module, DistributedDataParallel) else module


def maybe_no_sync(module: nn.Module, sync: bool) -> ContextManager:
    """Skip DDP's gradient all-reduce on accumulation micro-steps (``sync=False``).

    Wrap both the forward and the backward of the micro-step.
    """
    if sync or not isinstance(module, DistributedDataParallel):
        return contextlib.nullcontext()
    return module.no_sync()
