"""Rank helpers that also work without a process group (single process, tests).

torch is imported only where a tensor or device is asked for: the tracking layer asks
``is_main()`` in the sweep's writer actor and stage tasks, which never load torch, and
its import costs them seconds per Ray worker.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch


def _group():
    """``torch.distributed`` when this process is in a process group, else None.

    A process group lives in torch.distributed: a process that never imported it has none.
    """
    dist = sys.modules.get("torch.distributed")
    return dist if dist is not None and dist.is_available() and dist.is_initialized() else None


def is_distributed() -> bool:
    return _group() is not None


def rank() -> int:
    dist = _group()
    return dist.get_rank() if dist else 0


def world_size() -> int:
    dist = _group()
    return dist.get_world_size() if dist else 1


def is_main() -> bool:
    return rank() == 0


def barrier() -> None:
    if dist := _group():
        dist.barrier()


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    """In-place sum across ranks (identity without a process group)."""
    if dist := _group():
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def device() -> torch.device:
    """This rank's device: its CUDA device when one is visible, else the CPU."""
    import torch

    if torch.cuda.is_available():
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")
