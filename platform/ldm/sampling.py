"""Ancestral sampling with DDIM (Song et al. 2021) or DDPM, with classifier-free guidance.

Model-agnostic (STYLE rule 6): ``sample(net, noise, cond, *, steps, ...)`` takes any
``net(x_t, t, cond) -> prediction``; schedulers are diffusers' (``make_scheduler``).

Per-sample seeding: sample i drawn with base seed s uses its own CPU generator seeded
from (s, i) for its initial noise *and* every later noise draw (DDIM η > 0, DDPM), so
image i is the same whatever the batch size or the split across workers.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from platform.config.schema import DiffusionConfig, Sampler
from platform.ldm.diffusion import Net, make_scheduler


def sample_generators(seed: int, indices: Sequence[int]) -> list[torch.Generator]:
    """One CPU generator per sample index, seeded from (seed, index) without collisions."""
    gens = []
    for index in indices:
        state = np.random.SeedSequence([int(seed), int(index)]).generate_state(2, dtype=np.uint32)
        gens.append(torch.Generator().manual_seed(int(state[0]) << 32 | int(state[1])))
    return gens


def initial_noise(generators: Sequence[torch.Generator], shape: Sequence[int]) -> torch.Tensor:
    """x_T ~ N(0, I), one draw per generator: (len(generators), *shape) on the CPU."""
    return torch.stack([torch.randn(tuple(shape), generator=g) for g in generators])


def guided_prediction(
    net: Net,
    x: torch.Tensor,
    t: torch.Tensor,
    cond: torch.Tensor | None,
    uncond: torch.Tensor | None,
    guidance_scale: float,
) -> torch.Tensor:
    """ε = ε_u + s (ε_c − ε_u) (Ho & Salimans 2022); s = 1 (or no uncond) is ε_c alone."""
    if guidance_scale == 1.0 or uncond is None:
        return net(x, t, cond)
    both = net(torch.cat([x, x]), torch.cat([t, t]), torch.cat([uncond, cond]))  # one batched pass
    eps_u, eps_c = both.chunk(2)
    return eps_u + guidance_scale * (eps_c - eps_u)


@torch.no_grad()
def sample(
    net: Net,
    noise: torch.Tensor,
    cond: torch.Tensor | None,
    *,
    steps: int,
    diffusion: DiffusionConfig,
    sampler: str = Sampler.ddim.value,
    eta: float = 0.0,
    guidance_scale: float = 1.0,
    uncond: torch.Tensor | None = None,
    generators: Sequence[torch.Generator] | None = None,
) -> torch.Tensor:
    """Run the reverse process from ``noise`` (B, c, h, w) = x_T to x_0.

    Args:
        net: ``net(x_t, t, cond)`` predicting ε or v (per ``diffusion.prediction``).
        noise: x_T, on the device the sampling runs on.
        cond / uncond: conditioning for the conditional / unconditional branch.
        steps: number of sampling steps, 1 to ``diffusion.num_steps`` (DDIM "leading"+1
            spacing; DDPM the same subset; all of them: the full chain T-1 .. 0).
        diffusion: the schedule the net was trained with.
        sampler: ``ddim`` or ``ddpm``.
        eta: DDIM stochasticity η (0: deterministic).
        guidance_scale: classifier-free guidance s.
        generators: one per sample, for the noise of stochastic steps (per-sample seeding).
    """
    scheduler = make_scheduler(diffusion, sampler, steps=steps)
    scheduler.set_timesteps(steps, device=noise.device)
    kind = Sampler(sampler)
    gens = list(generators) if generators is not None else None
    x = noise
    for t in scheduler.timesteps:
        t_batch = t.expand(x.shape[0])
        pred = guided_prediction(net, x, t_batch, cond, uncond, guidance_scale).to(x.dtype)
        if kind is Sampler.ddim:
            x = scheduler.step(pred, t, x, eta=eta, generator=gens).prev_sample
        else:
            x = scheduler.step(pred, t, x, generator=gens).prev_sample
    return x
