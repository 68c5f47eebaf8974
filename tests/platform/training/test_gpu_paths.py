"""The bf16 / CUDA paths of both training steps (skipped without a CUDA device)."""

from __future__ import annotations

import pytest
import torch
from omegaconf import OmegaConf

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]


def test_autocast_is_bf16_on_cuda():
    from platform.training.precision import autocast

    x = torch.ones(4, 4, device="cuda")
    with autocast(torch.device("cuda"), "bf16"):
        assert (x @ x).dtype == torch.bfloat16
    with autocast(torch.device("cuda"), "fp32"):
        assert (x @ x).dtype == torch.float32


def test_first_stage_step_in_bf16_matches_fp32_closely():
    from platform.config.compose import compose_config
    from platform.first_stage.discriminator import PatchDiscriminator
    from platform.first_stage.loss import FirstStageLoss
    from platform.first_stage.model import build_first_stage
    from platform.first_stage.train import _Trainee, _train_step
    from platform.training.optim import adam
    from platform.training.resume import DataPosition

    cfg = compose_config(["scale=smoke", "first_stage=kl_f4", "first_stage.base_channels=8",
                          "first_stage.perceptual_weight=0", "first_stage.disc_start=0"])
    images = torch.rand(4, 3, 32, 32, generator=torch.Generator().manual_seed(0)) * 2 - 1
    losses = {}
    for precision in ("fp32", "bf16"):
        torch.manual_seed(0)
        model = build_first_stage(cfg.first_stage, resolution=32)
        loss = FirstStageLoss.from_config(cfg.first_stage, None)
        trainee, disc = _Trainee(model, loss).cuda(), PatchDiscriminator(3, 8, 3).cuda()
        opts = (adam(trainee.parameters(), 1e-4), adam(disc.parameters(), 1e-4))
        stream = iter([({"image": images}, DataPosition(0, 1))])
        tc = OmegaConf.create({"grad_accum": 1, "precision": precision})
        torch.manual_seed(1)
        logs, *_ = _train_step(trainee, disc, loss, opts, stream, 0, tc, torch.device("cuda"))
        losses[precision] = float(logs["rec"])
        assert all(torch.isfinite(torch.as_tensor(v)) for v in logs.values())
    assert losses["bf16"] == pytest.approx(losses["fp32"], rel=5e-2)
