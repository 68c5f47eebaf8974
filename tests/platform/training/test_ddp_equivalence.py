"""2-rank DDP on real Ray Train (gloo) = 1 rank on the same global batch, for both stages.

Each worker runs the stage's real training step (``first_stage.train._train_step``,
``ldm.train.train_step``) on its rank's slice of a fixed global batch for two steps and
rank 0 saves the weights. SGD keeps the comparison linear in the gradients (Adam would
turn fp32 all-reduce noise in near-zero gradients into ±lr steps). The first stage runs
VQ with the GAN off: KL posterior noise is drawn per rank by design, and the adaptive
GAN weight is a per-rank ratio of gradient norms, as in CompVis.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf
from safetensors.torch import load_file, save_file

from platform.training.ray_train import run_training

GLOBAL_BATCH, STEPS = 4, 2


def _global_batches(seed: int) -> list[dict[str, torch.Tensor]]:
    gen = torch.Generator().manual_seed(seed)
    return [{"image": torch.rand(GLOBAL_BATCH, 3, 32, 32, generator=gen) * 2 - 1,
             "label": torch.randint(0, 10, (GLOBAL_BATCH,), generator=gen)} for _ in range(STEPS)]


def _my_slice(batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    from platform.distributed import rank, world_size

    size = GLOBAL_BATCH // world_size()
    return {k: v[rank() * size:(rank() + 1) * size] for k, v in batch.items()}


def _save(module: torch.nn.Module, out: str, extra: dict[str, torch.Tensor] | None = None) -> None:
    from platform.distributed import barrier, is_main

    if is_main():
        tensors = {k: v.detach().contiguous().clone() for k, v in module.state_dict().items()}
        save_file({**tensors, **(extra or {})}, out)
    barrier()


def first_stage_worker(config: dict) -> None:
    from platform.first_stage.discriminator import PatchDiscriminator
    from platform.first_stage.loss import FirstStageLoss
    from platform.first_stage.model import build_first_stage
    from platform.first_stage.train import _Trainee, _train_step
    from platform.training.parallel import wrap_ddp
    from platform.training.resume import DataPosition

    cfg, cpu = OmegaConf.create(config["cfg"]), torch.device("cpu")
    torch.manual_seed(0)
    model = build_first_stage(cfg.first_stage, resolution=32)
    loss = FirstStageLoss.from_config(cfg.first_stage, None)
    trainee, disc = wrap_ddp(_Trainee(model, loss), cpu), wrap_ddp(PatchDiscriminator(3, 8, 3), cpu)
    opts = (torch.optim.SGD(trainee.parameters(), lr=0.1), torch.optim.SGD(disc.parameters(), lr=0.1))
    stream = iter((_my_slice(b), DataPosition(0, i + 1)) for i, b in enumerate(_global_batches(1)))
    tc = OmegaConf.create({"grad_accum": 1, "precision": "bf16"})
    for step in range(STEPS):
        _train_step(trainee, disc, loss, opts, stream, step, tc, cpu)
    _save(model, config["out"])


def ldm_worker(config: dict) -> None:
    from platform.ldm.diffusion import make_scheduler
    from platform.ldm.ema import Ema
    from platform.ldm.train import StepParts, build_model, load_frozen_first_stage, train_step
    from platform.training.parallel import wrap_ddp

    cfg, cpu = OmegaConf.create(config["cfg"]), torch.device("cpu")
    first_stage = load_frozen_first_stage(config["first_stage"], cfg, cpu)
    torch.manual_seed(0)
    model, cond_input = build_model(cfg, first_stage, cpu)
    ema = Ema(model, 0.9)
    parts = StepParts(net=wrap_ddp(model, cpu), model=model, ema=ema,
                      opt=torch.optim.SGD(model.parameters(), lr=0.1), scheduler=make_scheduler(cfg.ldm.diffusion),
                      first_stage=first_stage, cond_input=cond_input, scale=float(first_stage.scale_factor),
                      cfg_dropout=0.5, precision="bf16", device=cpu, seed=cfg.seed)
    for step, batch in enumerate(_global_batches(2)):
        train_step(parts, [_my_slice(batch)], step)
    _save(model, config["out"], {f"ema.{k}": v for k, v in ema.shadow.items()})


def both_stages_worker(config: dict) -> None:
    """Both stages' steps, one after the other, in one worker group (one Ray Train start-up)."""
    first_stage_worker({"cfg": config["first_stage_cfg"], "out": config["out"]["first_stage"]})
    ldm_worker({"cfg": config["ldm_cfg"], "first_stage": config["first_stage"], "out": config["out"]["ldm"]})


def _run_both(config: dict, tmp_path: Path) -> tuple[dict, dict]:
    """{stage: weights} after 1 rank (in-process) and after 2 ranks (Ray Train, gloo)."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    out = {ranks: {stage: str(tmp_path / f"{stage}-{ranks}.safetensors") for stage in ("first_stage", "ldm")}
           for ranks in (1, 2)}
    run_training(both_stages_worker, {**config, "out": out[1]}, num_workers=1, use_gpu=False, name="one",
                 storage_path=tmp_path / "ray", use_ray=False)
    run_training(both_stages_worker, {**config, "out": out[2]}, num_workers=2, use_gpu=False, name="two",
                 storage_path=tmp_path / "ray")
    return ({stage: load_file(path) for stage, path in out[1].items()},
            {stage: load_file(path) for stage, path in out[2].items()})


def _assert_equivalent(one: dict, two: dict, initial: dict) -> None:
    """Equal up to all-reduce summation order: 1e-5 of the largest change the steps made
    anywhere (a DDP bug is of the order of that change) plus a few float32 ulps."""
    assert one.keys() == two.keys()
    moves = {k: float((one[k] - initial[k]).abs().max()) for k in one if k in initial}
    atol = 1e-5 * max(moves.values())
    for key in one:
        ulps = 4 * torch.finfo(torch.float32).eps * float(one[key].abs().max())
        torch.testing.assert_close(two[key], one[key], rtol=0, atol=atol + ulps, msg=key)
    assert sum(m > 0 for m in moves.values()) > len(one) // 4  # the steps changed most tensors


@pytest.mark.slow  # one Ray Train run of two workers: ~40 s quiet
def test_two_ranks_equal_one_rank_for_both_stages(ray_cluster, tiny_shards, tmp_path):
    from platform.config.compose import compose_config
    from platform.first_stage.model import build_first_stage
    from platform.ldm.train import build_model, load_frozen_first_stage
    from tests.platform.ldm.conftest import make_first_stage_checkpoint, smoke_config

    fs_cfg = compose_config(["scale=smoke", "first_stage=vq_f8", "first_stage.base_channels=8",
                             "first_stage.perceptual_weight=0", "first_stage.disc_start=100"])
    first_stage_f8 = make_first_stage_checkpoint(tmp_path / "fs_f8")
    ldm_cfg = smoke_config(tiny_shards, tmp_path, "ldm.conditioning=class", "ldm.unet.channels=16",
                           "ldm.unet.context_dim=32")
    one, two = _run_both({"first_stage_cfg": OmegaConf.to_container(fs_cfg, resolve=True),
                          "ldm_cfg": OmegaConf.to_container(ldm_cfg, resolve=True),
                          "first_stage": str(first_stage_f8)}, tmp_path / "runs")

    torch.manual_seed(0)
    initial = build_first_stage(fs_cfg.first_stage, resolution=32).state_dict()
    _assert_equivalent(one["first_stage"], two["first_stage"], initial)
    torch.manual_seed(0)
    model, _ = build_model(ldm_cfg, load_frozen_first_stage(first_stage_f8, ldm_cfg, torch.device("cpu")),
                           torch.device("cpu"))
    _assert_equivalent(one["ldm"], two["ldm"], model.state_dict())
