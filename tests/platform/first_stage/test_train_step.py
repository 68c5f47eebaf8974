"""One training step in isolation: accumulation equals the full batch, the GAN switch."""

import pytest
import torch
from omegaconf import OmegaConf

from platform.config.compose import compose_config
from platform.first_stage.discriminator import PatchDiscriminator
from platform.first_stage.loss import FirstStageLoss
from platform.first_stage.model import build_first_stage
from platform.first_stage.train import _Trainee, _train_step
from platform.training.optim import adam
from platform.training.resume import DataPosition

IMAGES = torch.Generator().manual_seed(1)


def _setup(disc_start, regularizer="kl_f4"):
    cfg = compose_config(["scale=smoke", f"first_stage={regularizer}", "first_stage.base_channels=8",
                          "first_stage.perceptual_weight=0", f"first_stage.disc_start={disc_start}"])
    torch.manual_seed(0)
    model = build_first_stage(cfg.first_stage, resolution=32)
    loss = FirstStageLoss.from_config(cfg.first_stage, None)
    trainee, disc = _Trainee(model, loss), PatchDiscriminator(3, 8, 3)
    opts = (adam(trainee.parameters(), 1e-3), adam(disc.parameters(), 1e-3))
    return trainee, disc, loss, opts


def _stream(images, micro):
    """``images`` (N, 3, 32, 32) cut into micro-batches of ``micro``."""
    chunks = images.split(micro)
    return iter(({"image": c}, DataPosition(0, i + 1)) for i, c in enumerate(chunks))


def _gradient_step(regularizer, grad_accum, micro, images):
    trainee, disc, loss, opts = _setup(disc_start=100, regularizer=regularizer)
    grads = []  # what the autoencoder optimiser steps with, read just before it steps
    # The log-variance is frozen by default (CompVis): it has no gradient.
    opts[0].register_step_pre_hook(lambda *_: grads.extend(p.grad.clone() for p in trainee.parameters()
                                                           if p.grad is not None))
    tc = OmegaConf.create({"grad_accum": grad_accum, "precision": "bf16"})
    torch.manual_seed(5)  # the KL posterior samples: drawn in order, so the same noise per image
    logs, position, _, images_seen = _train_step(trainee, disc, loss, opts, _stream(images, micro), 0, tc,
                                                 torch.device("cpu"))
    assert images_seen == images.shape[0] and position == DataPosition(0, grad_accum)
    return torch.cat([g.flatten() for g in grads]), logs


@pytest.mark.parametrize("regularizer", ["kl_f4"])  # KL: with posterior noise, the harder case
def test_accumulated_gradient_equals_the_full_batch_gradient(regularizer):
    images = torch.rand(4, 3, 32, 32, generator=IMAGES) * 2 - 1
    full, full_logs = _gradient_step(regularizer, grad_accum=1, micro=4, images=images)
    accum, accum_logs = _gradient_step(regularizer, grad_accum=2, micro=2, images=images)
    assert full.abs().max() > 0
    # Equal up to fp32 summation order; a wrong 1/grad_accum scaling is off by 2x.
    torch.testing.assert_close(accum, full, rtol=0, atol=1e-5 * float(full.abs().max()))
    assert (accum - full).norm() <= 1e-5 * full.norm()
    for key in ("rec", "nll", "loss"):  # logs are the mean over micro-batches, i.e. the full-batch value
        torch.testing.assert_close(accum_logs[key], full_logs[key], rtol=1e-5, atol=1e-6)


def test_one_step_of_each_optimiser_after_disc_start():
    trainee, disc, loss, opts = _setup(disc_start=0)
    images = torch.rand(4, 3, 32, 32, generator=IMAGES) * 2 - 1
    before_ae = trainee.model.last_layer.detach().clone()
    before_d = disc[0].weight.detach().clone()
    tc = OmegaConf.create({"grad_accum": 2, "precision": "bf16"})
    logs, position, indices, images_seen = _train_step(trainee, disc, loss, opts, _stream(images, 2), 0, tc,
                                                       torch.device("cpu"))
    assert position == DataPosition(0, 2) and images_seen == 4 and indices is None
    assert {"rec", "nll", "kl", "g", "d", "d_weight", "disc_factor", "logvar"} <= set(logs)
    assert logs["disc_factor"] == 1 and logs["d"] > 0
    assert not torch.equal(before_ae, trainee.model.last_layer) and not torch.equal(before_d, disc[0].weight)
    assert all(p.grad is None for p in [*trainee.parameters(), *disc.parameters()])  # zeroed after stepping
    assert opts[0].state[trainee.model.last_layer]["step"] == 1 and opts[1].state[disc[0].weight]["step"] == 1


def test_generator_loss_sends_no_gradient_into_the_discriminator():
    """The G term reaches x̃ through a frozen copy of D: D's gradient comes from its own loss only."""
    trainee, disc, loss, _ = _setup(disc_start=0)
    x = torch.rand(2, 3, 32, 32, generator=IMAGES) * 2 - 1
    from platform.first_stage.train import _frozen_logits

    out = trainee(x)
    g_loss, logs = loss.generator_loss(x, out, _frozen_logits(disc, out.rec), trainee.model.last_layer, 0)
    g_loss.backward()
    assert logs["g"] != 0
    assert all(p.grad is None for p in disc.parameters())
    assert trainee.model.last_layer.grad.abs().sum() > 0


def test_discriminator_is_untouched_before_disc_start():
    trainee, disc, loss, opts = _setup(disc_start=5)
    images = torch.rand(4, 3, 32, 32, generator=IMAGES) * 2 - 1
    before_d = {k: v.clone() for k, v in disc.state_dict().items()}
    tc = OmegaConf.create({"grad_accum": 2, "precision": "bf16"})
    logs, *_ = _train_step(trainee, disc, loss, opts, _stream(images, 2), 4, tc, torch.device("cpu"))
    assert logs["g"] == 0 and logs["disc_factor"] == 0 and "d" not in logs
    assert all(torch.equal(before_d[k], v) for k, v in disc.state_dict().items())  # not even BN stats
    assert not opts[1].state
