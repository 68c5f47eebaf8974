"""Samplers against known answers: oracle networks for known data, Gaussian moments, and
diffusers-style full-loop golden values on a tiny fixed network.

The oracles compute ᾱ from the paper's schedule (linear in √β), not from the scheduler,
so a wrong schedule, prediction type or final-step convention in ``make_scheduler`` or
``sample`` shows up as a wrong answer rather than a self-consistent one.
"""

from __future__ import annotations

import math

import pytest
import torch

from platform.config.schema import DiffusionConfig
from platform.ldm.sampling import initial_noise, sample, sample_generators


def _alpha_bar(cfg: DiffusionConfig) -> torch.Tensor:
    betas = torch.linspace(math.sqrt(cfg.beta_start), math.sqrt(cfg.beta_end), cfg.num_steps, dtype=torch.float64) ** 2
    return torch.cumprod(1 - betas, 0)


def _as_prediction(eps, x_t, ab, prediction):
    """ε, or v = √ᾱ ε − √(1-ᾱ) x0 with x0 recovered from x_t and ε."""
    if prediction == "epsilon":
        return eps
    x0 = (x_t - (1 - ab).sqrt() * eps) / ab.sqrt()
    return ab.sqrt() * eps - (1 - ab).sqrt() * x0


def point_oracle(x0: torch.Tensor, cfg: DiffusionConfig):
    """The exact ε (or v) of data that is the single point ``x0``: ε = (x_t − √ᾱ x0)/√(1−ᾱ)."""
    ab_all = _alpha_bar(cfg)

    def net(x_t, t, cond):
        ab = ab_all[t].view(-1, 1, 1, 1)
        eps = (x_t.double() - ab.sqrt() * x0.double()) / (1 - ab).sqrt()
        return _as_prediction(eps, x_t.double(), ab, cfg.prediction).float()

    return net


def gaussian_oracle(mu: float, sigma: float, cfg: DiffusionConfig):
    """E[ε | x_t] for data ~ N(μ, σ²) per dimension: √(1−ᾱ)(x_t − √ᾱ μ) / (ᾱσ² + 1 − ᾱ)."""
    ab_all = _alpha_bar(cfg)

    def net(x_t, t, cond):
        ab = ab_all[t].view(-1, 1, 1, 1)
        x = x_t.double()
        eps = (1 - ab).sqrt() * (x - ab.sqrt() * mu) / (ab * sigma**2 + 1 - ab)
        return _as_prediction(eps, x, ab, cfg.prediction).float()

    return net


@pytest.mark.parametrize("prediction", ["epsilon", "v_prediction"])
@pytest.mark.parametrize("steps", [10, 50])
def test_deterministic_ddim_with_an_oracle_returns_the_data(prediction, steps):
    """For a point mass the DDIM ODE keeps ε fixed, so x_0 = √ᾱ_f x0 + √(1−ᾱ_f) ε_T exactly,
    where ᾱ_f = ᾱ at t = 0 (CompVis' last step stops there: set_alpha_to_one=False)."""
    cfg = DiffusionConfig(prediction=prediction)
    x0 = torch.linspace(-1, 1, 2 * 4 * 4).view(1, 2, 4, 4).repeat(3, 1, 1, 1)
    noise = torch.randn(3, 2, 4, 4, generator=torch.Generator().manual_seed(0))
    out = sample(point_oracle(x0, cfg), noise, None, steps=steps, diffusion=cfg, sampler="ddim", eta=0.0)
    ab = _alpha_bar(cfg)
    first_t = 1 + (steps - 1) * (cfg.num_steps // steps)  # "leading" spacing + 1
    eps_T = (noise.double() - ab[first_t].sqrt() * x0) / (1 - ab[first_t]).sqrt()
    expected = ab[0].sqrt() * x0 + (1 - ab[0]).sqrt() * eps_T
    torch.testing.assert_close(out.double(), expected, rtol=0, atol=2e-5)
    assert (out - x0).abs().max() < 0.25  # the data, up to the ᾱ_0 noise level (std 0.039)


@pytest.mark.parametrize("sampler,eta", [("ddim", 0.0), ("ddim", 1.0), ("ddpm", 0.0)])
@pytest.mark.parametrize("prediction", ["epsilon", "v_prediction"])
def test_gaussian_data_gives_its_moments(sampler, eta, prediction):
    """With the exact score of N(μ, σ²) data, 500 steps give samples of mean μ and std σ.

    DDIM stops at ᾱ_0 (mean √ᾱ_0 μ, variance ᾱ_0 σ² + 1 − ᾱ_0); DDPM goes to the data.
    Tolerances: 500-step discretisation shrinks the std by up to ~2% (measured: DDIM
    0.4956, DDPM 0.4894 for σ = 0.5), and the mean's standard error over 8192 iid values
    is 0.0055. A wrong schedule or prediction type is off by far more.
    """
    cfg = DiffusionConfig(prediction=prediction)
    mu, sigma = 1.5, 0.5
    gens = sample_generators(11, range(32))
    noise = initial_noise(gens, (1, 16, 16))  # 32 × 256 independent scalar samples
    out = sample(gaussian_oracle(mu, sigma, cfg), noise, None, steps=500, diffusion=cfg, sampler=sampler,
                 eta=eta, generators=gens).double().flatten()
    ab0 = float(_alpha_bar(cfg)[0])
    exp_mean, exp_std = (math.sqrt(ab0) * mu, math.sqrt(ab0 * sigma**2 + 1 - ab0)) if sampler == "ddim" else (mu, sigma)
    assert abs(float(out.mean()) - exp_mean) < 0.02, float(out.mean())
    assert abs(float(out.std()) - exp_std) < 0.02, float(out.std())


class TinyNet(torch.nn.Module):
    """A fixed, seeded conv net: the 'model' of the golden full-loop values."""

    def __init__(self) -> None:
        super().__init__()
        gen = torch.Generator().manual_seed(1234)
        self.weight = torch.nn.Parameter(torch.randn(2, 2, 3, 3, generator=gen) * 0.2)
        self.time = torch.nn.Parameter(torch.randn(2, generator=gen) * 0.1)

    def forward(self, x, t, cond):
        h = torch.nn.functional.conv2d(x, self.weight, padding=1)
        return torch.tanh(h) + self.time.view(1, -1, 1, 1) * (t.float().view(-1, 1, 1, 1) / 1000)


# (sum, first 4 values of sample 0) of 2 samples of (2, 4, 4), 20 steps, seed 0, guidance 1.
# Regenerate only for an intended change of sampling maths, and say so in the commit.
GOLDEN = {
    ("ddim", "epsilon"): (1578.0813, [170.911774, 33.364388, 61.685951, -108.523438]),
    ("ddim", "v_prediction"): (29.546644, [2.852575, 0.689804, 1.230608, -1.950766]),
    ("ddpm", "epsilon"): (2406.9126, [202.602753, 125.313942, 147.273117, -67.315132]),
    ("ddpm", "v_prediction"): (3.2009792, [0.09666, 0.854761, -1.497117, 1.055069]),
}


def _full_loop(sampler: str, prediction: str) -> torch.Tensor:
    cfg = DiffusionConfig(prediction=prediction)
    gens = sample_generators(0, range(2))
    noise = initial_noise(gens, (2, 4, 4))
    with torch.no_grad():
        return sample(TinyNet(), noise, None, steps=20, diffusion=cfg, sampler=sampler,
                      eta=0.0 if sampler == "ddim" else 1.0, generators=gens)


@pytest.mark.parametrize("sampler,prediction", list(GOLDEN))
def test_full_loop_golden_values(sampler, prediction):
    out = _full_loop(sampler, prediction)
    golden_sum, golden_slice = GOLDEN[(sampler, prediction)]
    assert float(out.sum()) == pytest.approx(golden_sum, rel=1e-4, abs=1e-4)
    torch.testing.assert_close(out[0].flatten()[:4], torch.tensor(golden_slice), rtol=1e-4, atol=1e-4)
