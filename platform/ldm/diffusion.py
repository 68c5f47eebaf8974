"""Forward process and training loss of the LDM (paper Eq. 2; Ho et al. 2020, Eq. 14).

Model-agnostic (STYLE rule 6): ``diffusion_loss(net, x0, cond)`` takes any callable
``net(x_t, t, cond) -> prediction``. The schedule is diffusers' ``scaled_linear`` with
β from 0.0015 to 0.0195 over 1000 steps: LDM's "linear" schedule is linear in √β.
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from diffusers import DDIMScheduler, DDPMScheduler

from platform.config.schema import DiffusionConfig, Prediction, Sampler

Net = Callable[[torch.Tensor, torch.Tensor, "torch.Tensor | None"], torch.Tensor]


def make_scheduler(cfg: DiffusionConfig, sampler: str = Sampler.ddpm.value, *,
                   steps: int | None = None) -> DDPMScheduler | DDIMScheduler:
    """A diffusers scheduler for ``cfg``; sampling uses CompVis' "leading" spacing + 1.

    CompVis DDIM steps are ``range(0, 1000, 1000 // S) + 1`` and the last step goes to
    ᾱ_0 (not 1): ``timestep_spacing="leading"``, ``steps_offset=1``,
    ``set_alpha_to_one=False``. Latents are not clipped. For the full chain
    (``steps == cfg.num_steps``) the offset would reach t = T, past the schedule, so it
    runs t = T-1 .. 0, DDPM's own chain (Ho et al. 2020, Alg. 2).

    Raises:
        ValueError: ``steps`` outside 1 .. ``cfg.num_steps``, or an unknown mode.
    """
    if steps is not None and not 1 <= steps <= cfg.num_steps:
        raise ValueError(f"cannot sample with {steps} steps from a {cfg.num_steps}-step schedule; "
                         f"use 1 to {cfg.num_steps}")
    try:
        prediction = Prediction(cfg.prediction).value
        kind = Sampler(sampler)
    except ValueError as error:
        raise ValueError(f"unknown diffusion mode: {error}") from None
    common = dict(
        num_train_timesteps=cfg.num_steps,
        beta_start=cfg.beta_start,
        beta_end=cfg.beta_end,
        beta_schedule=cfg.beta_schedule,
        prediction_type=prediction,
        clip_sample=False,
        timestep_spacing="leading",
        steps_offset=0 if steps == cfg.num_steps else 1,
    )
    if kind is Sampler.ddim:
        return DDIMScheduler(set_alpha_to_one=False, **common)
    return DDPMScheduler(variance_type="fixed_small", **common)


def q_sample(scheduler: DDPMScheduler | DDIMScheduler, x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """x_t = √ᾱ_t x0 + √(1-ᾱ_t) ε (Ho et al. 2020, Eq. 4)."""
    return scheduler.add_noise(x0, noise, t)


def diffusion_loss(
    net: Net,
    x0: torch.Tensor,
    cond: torch.Tensor | None,
    *,
    scheduler: DDPMScheduler | DDIMScheduler,
    generator: torch.Generator | None = None,
    t: torch.Tensor | None = None,
    noise: torch.Tensor | None = None,
) -> torch.Tensor:
    """L_LDM = E‖target − net(z_t, t, c)‖² with t ~ U{0..T-1} (paper Eq. 2); a scalar.

    The target is ε for ``epsilon`` prediction and v = √ᾱ ε − √(1-ᾱ) x0 for
    ``v_prediction`` (Salimans & Ho 2022). ``t`` (B,) and ``noise`` (like x0), when both
    given, are used instead of fresh draws (the training loop draws them per global sample).
    """
    batch = x0.shape[0]
    steps = scheduler.config.num_train_timesteps
    if t is not None and noise is not None:
        t, noise = t.to(x0.device), noise.to(x0.device, x0.dtype)
    elif generator is None:
        t = torch.randint(0, steps, (batch,), device=x0.device)
        noise = torch.randn_like(x0)
    else:  # reproducible draws (tests): a CPU generator, moved to x0's device
        t = torch.randint(0, steps, (batch,), generator=generator).to(x0.device)
        noise = torch.randn(x0.shape, generator=generator, dtype=x0.dtype).to(x0.device)
    x_t = q_sample(scheduler, x0, noise, t)  # (B, c, h, w)
    if scheduler.config.prediction_type == Prediction.v_prediction.value:
        target = scheduler.get_velocity(x0, noise, t)
    else:
        target = noise
    prediction = net(x_t, t, cond)
    return F.mse_loss(prediction.float(), target.float())
