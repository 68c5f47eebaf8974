"""Exponential moving average of the trained weights (CompVis ``LitEma``).

decay_n = min(decay, (1 + n) / (10 + n)) after n updates: the warm-up lets early EMA
weights follow the fast-changing model instead of staying near the initialisation.
Buffers (e.g. the null-text features) are copied, not averaged.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn


class Ema:
    """Shadow copies of ``model``'s trainable parameters, in fp32."""

    def __init__(self, model: nn.Module, decay: float) -> None:
        self.decay = decay
        self.num_updates = 0
        self.shadow: dict[str, torch.Tensor] = {
            name: p.detach().float().clone() for name, p in model.named_parameters() if p.requires_grad
        }

    def current_decay(self) -> float:
        """The decay the next update uses (warm-up included)."""
        n = self.num_updates + 1
        return min(self.decay, (1 + n) / (10 + n))

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """shadow ← d·shadow + (1 − d)·θ."""
        decay = self.current_decay()
        self.num_updates += 1
        params = dict(model.named_parameters())
        names = list(self.shadow)
        shadow = [self.shadow[n] for n in names]
        current = [params[n].detach().float() for n in names]
        torch._foreach_lerp_(shadow, current, 1.0 - decay)

    @torch.no_grad()
    def copy_to(self, model: nn.Module) -> nn.Module:
        """Load the EMA weights into ``model`` (same architecture); returns it."""
        params = dict(model.named_parameters())
        for name, value in self.shadow.items():
            params[name].copy_(value.to(params[name].dtype))
        return model

    def to(self, device: torch.device | str) -> "Ema":
        self.shadow = {k: v.to(device) for k, v in self.shadow.items()}
        return self

    def state_dict(self) -> dict[str, Any]:
        return {"decay": self.decay, "num_updates": self.num_updates, "shadow": dict(self.shadow)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        missing = set(self.shadow) ^ set(state["shadow"])
        if missing:
            raise KeyError(f"EMA state does not match the model: {sorted(missing)[:5]}")
        device = next(iter(self.shadow.values())).device if self.shadow else "cpu"
        self.decay = float(state["decay"])
        self.num_updates = int(state["num_updates"])
        self.shadow = {k: v.float().to(device) for k, v in state["shadow"].items()}
