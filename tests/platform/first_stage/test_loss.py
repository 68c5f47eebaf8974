"""The pieces of the first-stage objective, pinned to their definitions."""

import math

import pytest
import torch
from torch import nn

from platform.first_stage.loss import FirstStageLoss, adaptive_weight, disc_factor, hinge_d_loss
from platform.first_stage.model import Reconstruction


class _L2Perceptual(nn.Module):
    """A stand-in perceptual distance (B,) so the tests need no VGG weights."""

    def forward(self, x, y):
        return ((x - y) ** 2).mean(dim=(1, 2, 3))


def _loss(regularizer, **kw):
    args = dict(perceptual_weight=1.0, kl_weight=1e-6, codebook_weight=1.0, disc_weight=0.5, disc_start=100)
    return FirstStageLoss(regularizer, _L2Perceptual(), **{**args, **kw})


def _decoder_pass():
    """x̃ = conv(h): a 'last layer' whose weight the adaptive weight differentiates."""
    torch.manual_seed(0)
    last = nn.Conv2d(4, 3, 3, padding=1)
    x = torch.rand(2, 3, 8, 8) * 2 - 1
    rec = last(torch.randn(2, 4, 8, 8))
    return x, rec, last.weight


def test_adaptive_weight_is_the_ratio_of_last_layer_gradient_norms():
    x, rec, weight = _decoder_pass()
    nll = (x - rec).abs().sum()
    g = -(rec * torch.linspace(-1, 1, 8)).mean()
    expected = torch.autograd.grad(nll, weight, retain_graph=True)[0].norm() / (
        torch.autograd.grad(g, weight, retain_graph=True)[0].norm() + 1e-4)
    assert torch.allclose(adaptive_weight(nll, g, weight), expected)
    assert adaptive_weight(nll * 1e9, g, weight) == 1e4  # clamped
    assert not adaptive_weight(nll, g, weight).requires_grad


def test_no_adversarial_term_before_disc_start():
    x, rec, weight = _decoder_pass()
    loss = _loss("kl", disc_start=10)
    out = Reconstruction(rec=rec, kl=torch.tensor([3.0, 5.0]))
    before, logs = loss.generator_loss(x, out, None, weight, step=9)
    assert disc_factor(9, 10) == 0.0 and disc_factor(10, 10) == 1.0
    assert logs["g"] == 0 and logs["d_weight"] == 0 and logs["disc_factor"] == 0
    assert torch.allclose(before, logs["nll"] + 1e-6 * 4.0)
    logits = -rec.mean(dim=1, keepdim=True)
    after, logs = loss.generator_loss(x, out, logits, weight, step=10)
    assert logs["disc_factor"] == 1 and logs["d_weight"] > 0
    assert torch.allclose(after, logs["nll"] + 1e-6 * 4.0 + logs["d_weight"] * logs["g"])
    with pytest.raises(ValueError, match="disc_start"):
        loss.generator_loss(x, out, None, weight, step=10)
    d_before, _ = loss.discriminator_loss(torch.ones(2, 1, 2, 2), -torch.ones(2, 1, 2, 2) * 3, step=9)
    assert d_before == 0


def test_kl_loss_is_the_summed_nll_with_learned_logvar_plus_weighted_kl():
    x, rec, weight = _decoder_pass()
    loss = _loss("kl", kl_weight=0.01, learn_logvar=True)
    loss.logvar.data.fill_(0.5)
    out = Reconstruction(rec=rec, kl=torch.tensor([3.0, 5.0]))
    total, logs = loss.generator_loss(x, out, None, weight, step=0)
    rec_loss = (x - rec).abs() + ((x - rec) ** 2).mean(dim=(1, 2, 3)).view(-1, 1, 1, 1)
    nll = (rec_loss / math.exp(0.5) + 0.5).sum() / 2  # summed over pixels, mean over batch
    assert torch.allclose(logs["nll"], nll) and logs["kl"] == 4.0
    assert torch.allclose(total, nll + 0.01 * 4.0)
    total.backward()
    assert loss.logvar.grad is not None and loss.logvar.grad != 0  # s is learned


def test_logvar_stays_out_of_the_optimiser_by_default_as_in_compvis():
    from platform.config.compose import compose_config
    from platform.training.optim import adam

    cfg = compose_config(["scale=smoke", "first_stage=kl_f4"])
    assert cfg.first_stage.learn_logvar is False
    fixed = FirstStageLoss.from_config(cfg.first_stage, _L2Perceptual())
    learned = FirstStageLoss.from_config({**cfg.first_stage, "learn_logvar": True}, _L2Perceptual())
    for loss, trained in ((fixed, False), (learned, True)):
        x, rec, weight = _decoder_pass()
        head = nn.Linear(1, 1)  # something else the autoencoder optimiser updates
        opt = adam([*head.parameters(), *loss.parameters()], lr=0.1)
        total, _ = loss.generator_loss(x, Reconstruction(rec=rec, kl=torch.tensor([1.0, 1.0])), None, weight, step=0)
        (total + head.weight.sum()).backward()
        opt.step()
        assert (loss.logvar.item() != 0.0) is trained
        assert any(p is loss.logvar for group in opt.param_groups for p in group["params"]) is trained


def test_vq_loss_adds_the_codebook_term_to_the_mean_nll():
    x, rec, weight = _decoder_pass()
    loss = _loss("vq", codebook_weight=2.0)
    assert loss.logvar is None
    out = Reconstruction(rec=rec, codebook=torch.tensor(0.25))
    total, logs = loss.generator_loss(x, out, None, weight, step=0)
    rec_loss = (x - rec).abs() + ((x - rec) ** 2).mean(dim=(1, 2, 3)).view(-1, 1, 1, 1)
    assert torch.allclose(logs["nll"], rec_loss.mean()) and logs["codebook"] == 0.25
    assert torch.allclose(total, rec_loss.mean() + 2.0 * 0.25)


def test_hinge_loss():
    real, fake = torch.tensor([2.0, 0.5]), torch.tensor([-2.0, 0.0])
    assert torch.isclose(hinge_d_loss(real, fake), torch.tensor(0.5 * (0.25 + 0.5)))


def test_loss_rejects_unknown_regularizer_and_missing_perceptual():
    with pytest.raises(ValueError, match="regularizer"):
        _loss("none")
    with pytest.raises(ValueError, match="perceptual"):
        FirstStageLoss("kl", None, perceptual_weight=1.0, kl_weight=1e-6, codebook_weight=1.0,
                       disc_weight=0.5, disc_start=0)
