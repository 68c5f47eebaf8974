"""Samplers with a dummy network: determinism, guidance, per-sample seeding."""

from __future__ import annotations

import pytest
import torch

from platform.config.schema import DiffusionConfig
from platform.ldm.sampling import guided_prediction, initial_noise, sample, sample_generators

DIFF = DiffusionConfig()


def dummy_net(x, t, cond):
    """A fixed, cond-dependent 'ε-predictor' (per-sample: no cross-batch mixing)."""
    shift = 0.0 if cond is None else cond.view(-1, 1, 1, 1)
    return 0.3 * x + 0.01 * t.view(-1, 1, 1, 1).float().sqrt() * torch.tanh(x) + shift


def test_ddim_eta0_is_deterministic():
    noise = torch.randn(3, 2, 4, 4)
    a = sample(dummy_net, noise, None, steps=10, diffusion=DIFF, eta=0.0)
    # other generators must not matter when η = 0
    b = sample(dummy_net, noise.clone(), None, steps=10, diffusion=DIFF, eta=0.0,
               generators=sample_generators(123, range(3)))
    assert torch.equal(a, b)
    assert not torch.equal(a, noise)


@pytest.mark.parametrize("sampler", ["ddpm", "ddim"])
def test_the_full_1000_step_chain_runs_from_t_999_to_0(sampler):
    from platform.ldm.diffusion import make_scheduler

    seen = []

    def net(x, t, cond):
        seen.append(int(t[0]))
        return dummy_net(x, t, cond)

    out = sample(net, torch.randn(2, 2, 4, 4), None, steps=1000, diffusion=DIFF, sampler=sampler,
                 generators=sample_generators(0, [0, 1]))
    assert seen == list(range(999, -1, -1)) and torch.isfinite(out).all()
    scheduler = make_scheduler(DIFF, sampler, steps=10)  # shorter chains keep CompVis' leading + 1
    scheduler.set_timesteps(10)
    assert scheduler.timesteps[0] == 901 and scheduler.timesteps[-1] == 1
    with pytest.raises(ValueError, match="1 to 1000"):
        sample(net, torch.randn(1, 2, 4, 4), None, steps=1001, diffusion=DIFF, sampler=sampler)


def test_ddim_eta1_uses_the_generators():
    noise = torch.randn(2, 2, 4, 4)
    a = sample(dummy_net, noise, None, steps=5, diffusion=DIFF, eta=1.0, generators=sample_generators(0, [0, 1]))
    b = sample(dummy_net, noise, None, steps=5, diffusion=DIFF, eta=1.0, generators=sample_generators(1, [0, 1]))
    assert not torch.allclose(a, b)


def test_guidance_scale_one_equals_conditional_prediction():
    x, t = torch.randn(4, 2, 4, 4), torch.full((4,), 500)
    cond, uncond = torch.randn(4), torch.zeros(4)
    conditional = dummy_net(x, t, cond)
    assert torch.equal(guided_prediction(dummy_net, x, t, cond, uncond, 1.0), conditional)
    s = 1.5
    eps_u, eps_c = dummy_net(x, t, uncond), conditional
    torch.testing.assert_close(guided_prediction(dummy_net, x, t, cond, uncond, s), eps_u + s * (eps_c - eps_u))
    assert not torch.allclose(guided_prediction(dummy_net, x, t, cond, uncond, s), conditional)


@pytest.mark.parametrize("sampler,eta", [("ddim", 0.0), ("ddim", 1.0), ("ddpm", 0.0)])
def test_per_sample_seeding_is_batch_size_invariant(sampler, eta):
    shape, seed = (2, 4, 4), 7
    cond_all = torch.arange(4, dtype=torch.float32) / 4

    def draw(indices):
        gens = sample_generators(seed, indices)
        noise = initial_noise(gens, shape)
        return sample(dummy_net, noise, cond_all[indices], steps=8, diffusion=DIFF, sampler=sampler, eta=eta,
                      guidance_scale=2.0, uncond=torch.zeros(len(indices)), generators=gens)

    batched = draw([0, 1, 2, 3])
    singles = torch.cat([draw([i]) for i in range(4)])
    split = torch.cat([draw([0, 1]), draw([2, 3])])
    torch.testing.assert_close(batched, singles, rtol=0, atol=1e-6)
    torch.testing.assert_close(batched, split, rtol=0, atol=1e-6)
    assert not torch.allclose(batched[0], batched[1])


def test_generators_depend_on_seed_and_index():
    a = initial_noise(sample_generators(0, [0, 1]), (3,))
    b = initial_noise(sample_generators(1, [0, 1]), (3,))
    again = initial_noise(sample_generators(0, [1]), (3,))
    assert not torch.equal(a[0], a[1]) and not torch.equal(a[0], b[0])
    assert torch.equal(a[1], again[0])
