"""Forward process, loss targets and scheduler settings against closed forms."""

from __future__ import annotations

import math

import pytest
import torch

from platform.config.schema import DiffusionConfig
from platform.ldm.diffusion import diffusion_loss, make_scheduler, q_sample


def _alpha_bar(cfg: DiffusionConfig) -> torch.Tensor:
    # LDM's "linear" schedule: linear in sqrt(beta) (CompVis make_beta_schedule).
    betas = torch.linspace(math.sqrt(cfg.beta_start), math.sqrt(cfg.beta_end), cfg.num_steps, dtype=torch.float64) ** 2
    return torch.cumprod(1 - betas, 0)


def test_forward_noising_equals_closed_form():
    cfg = DiffusionConfig()
    scheduler = make_scheduler(cfg)
    x0, eps = torch.randn(5, 4, 8, 8), torch.randn(5, 4, 8, 8)
    t = torch.tensor([0, 1, 250, 731, 999])
    ab = _alpha_bar(cfg)[t].float().view(-1, 1, 1, 1)
    expected = ab.sqrt() * x0 + (1 - ab).sqrt() * eps
    torch.testing.assert_close(q_sample(scheduler, x0, eps, t), expected, rtol=1e-5, atol=1e-5)
    # the paper's released range, not DDPM's 1e-4..2e-2
    assert scheduler.betas[0].item() == pytest.approx(0.0015)
    assert scheduler.betas[-1].item() == pytest.approx(0.0195)


@pytest.mark.parametrize("prediction", ["epsilon", "v_prediction"])
def test_loss_is_zero_for_an_oracle_and_positive_otherwise(prediction):
    cfg = DiffusionConfig(prediction=prediction)
    scheduler = make_scheduler(cfg)
    ab_all = _alpha_bar(cfg).float()
    x0 = torch.randn(6, 3, 4, 4)

    def oracle(x_t, t, cond):  # recovers ε (and v) from x_t and the known x0
        ab = ab_all[t].view(-1, 1, 1, 1)
        eps = (x_t - ab.sqrt() * x0) / (1 - ab).sqrt()
        return eps if prediction == "epsilon" else ab.sqrt() * eps - (1 - ab).sqrt() * x0

    gen = torch.Generator().manual_seed(0)
    assert diffusion_loss(oracle, x0, None, scheduler=scheduler, generator=gen).item() < 1e-8
    zero = diffusion_loss(lambda x, t, c: torch.zeros_like(x), x0, None, scheduler=scheduler)
    assert zero.item() > 0.1


def test_ddim_uses_compvis_leading_plus_one_spacing():
    scheduler = make_scheduler(DiffusionConfig(), "ddim")
    scheduler.set_timesteps(10)
    assert scheduler.timesteps.tolist() == [901, 801, 701, 601, 501, 401, 301, 201, 101, 1]
    assert scheduler.final_alpha_cumprod.item() == pytest.approx(scheduler.alphas_cumprod[0].item())


def test_unknown_prediction_is_rejected():
    with pytest.raises(ValueError, match="unknown diffusion mode"):
        make_scheduler(DiffusionConfig(prediction="x0"))
