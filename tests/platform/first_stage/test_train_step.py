"""One training step in isolation: gradient accumulation, the GAN switch, both optimisers."""

import torch
from omegaconf import OmegaConf

from platform.config.compose import compose_config
from platform.first_stage.discriminator import PatchDiscriminator
from platform.first_stage.loss import FirstStageLoss
from platform.first_stage.model import build_first_stage
from platform.first_stage.train import _Trainee, _train_step
from platform.training.optim import adam
from platform.training.resume import DataPosition


def _setup(disc_start):
    cfg = compose_config(["scale=smoke", "first_stage=kl_f4", "first_stage.base_channels=8",
                          "first_stage.perceptual_weight=0", f"first_stage.disc_start={disc_start}"])
    torch.manual_seed(0)
    model = build_first_stage(cfg.first_stage, resolution=32)
    loss = FirstStageLoss.from_config(cfg.first_stage, None)
    trainee, disc = _Trainee(model, loss), PatchDiscriminator(3, 8, 3)
    opts = (adam(trainee.parameters(), 1e-3), adam(disc.parameters(), 1e-3))
    images = torch.rand(4, 2, 3, 32, 32) * 2 - 1
    stream = iter(({"image": images[i]}, DataPosition(0, i + 1)) for i in range(4))
    tc = OmegaConf.create({"grad_accum": 2, "precision": "bf16"})
    return trainee, disc, loss, opts, stream, tc


def test_accumulates_micro_batches_into_one_step_of_each_optimiser():
    trainee, disc, loss, opts, stream, tc = _setup(disc_start=0)
    before_ae = trainee.model.last_layer.detach().clone()
    before_d = disc[0].weight.detach().clone()
    logs, position, indices, images = _train_step(trainee, disc, loss, opts, stream, 0, tc, torch.device("cpu"))
    assert position == DataPosition(0, 2) and images == 4 and indices is None  # two micro-batches of 2
    assert {"rec", "nll", "kl", "g", "d", "d_weight", "disc_factor", "logvar"} <= set(logs)
    assert logs["disc_factor"] == 1 and logs["d"] > 0
    assert not torch.equal(before_ae, trainee.model.last_layer) and not torch.equal(before_d, disc[0].weight)
    assert all(p.grad is None for p in [*trainee.parameters(), *disc.parameters()])  # zeroed after stepping
    assert opts[0].state[trainee.model.last_layer]["step"] == 1


def test_discriminator_is_untouched_before_disc_start():
    trainee, disc, loss, opts, stream, tc = _setup(disc_start=5)
    before_d = {k: v.clone() for k, v in disc.state_dict().items()}
    logs, *_ = _train_step(trainee, disc, loss, opts, stream, 4, tc, torch.device("cpu"))
    assert logs["g"] == 0 and logs["disc_factor"] == 0 and "d" not in logs
    assert all(torch.equal(before_d[k], v) for k, v in disc.state_dict().items())  # not even BN stats
    assert not opts[1].state
