"""Optimiser helpers: the CompVis learning-rate convention and Adam builders."""

from __future__ import annotations

from typing import Iterable

import torch


def global_batch(batch_size: int, *, grad_accum: int = 1, world_size: int = 1) -> int:
    """Images per optimiser step across all ranks."""
    return batch_size * grad_accum * world_size


def scaled_lr(base_lr: float, *, batch_size: int, grad_accum: int, world_size: int, scale: bool) -> float:
    """The effective learning rate.

    CompVis ``main.py``: ``lr = accumulate_grad_batches · n_gpus · batch_size · base_lr``
    when ``scale_lr`` is on (e.g. 4.5e-6 × 12 for the paper's autoencoders); otherwise
    ``base_lr`` is already the effective rate.
    """
    if not scale:
        return base_lr
    return base_lr * global_batch(batch_size, grad_accum=grad_accum, world_size=world_size)


def adam(params: Iterable[torch.nn.Parameter], lr: float, betas: tuple[float, float] = (0.5, 0.9)) -> torch.optim.Adam:
    """Adam over the parameters that require grad; GAN betas (0.5, 0.9) as in taming/CompVis."""
    trainable = [p for p in params if p.requires_grad]
    if not trainable:
        raise ValueError("no trainable parameters for the optimiser")
    return torch.optim.Adam(trainable, lr=lr, betas=betas)
