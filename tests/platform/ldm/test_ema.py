"""EMA warm-up and state round trip."""

from __future__ import annotations

import torch
from torch import nn

from platform.ldm.ema import Ema


def test_warmup_decay_and_update():
    model = nn.Linear(2, 2)
    ema = Ema(model, decay=0.9999)
    assert ema.current_decay() == (1 + 1) / (10 + 1)  # n = 1 on the first update
    before = {k: v.clone() for k, v in ema.shadow.items()}
    with torch.no_grad():
        model.weight.add_(1.0)
    ema.update(model)
    d = 2 / 11
    torch.testing.assert_close(ema.shadow["weight"], d * before["weight"] + (1 - d) * model.weight)
    ema.num_updates = 100_000
    assert ema.current_decay() == 0.9999  # warm-up over: the configured decay


def test_state_round_trip_and_copy_to():
    model = nn.Linear(3, 1)
    ema = Ema(model, decay=0.5)
    with torch.no_grad():
        model.weight.mul_(3)
    ema.update(model)
    other = Ema(nn.Linear(3, 1), decay=0.9)
    other.load_state_dict(ema.state_dict())
    assert other.num_updates == 1 and other.decay == 0.5
    target = other.copy_to(nn.Linear(3, 1))
    torch.testing.assert_close(target.weight, ema.shadow["weight"])
