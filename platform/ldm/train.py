"""LDM training (stage 2): one loop per worker, runnable without Ray; Ray Train at the edge.

Sections: build (first stage, conditioning, model, EMA, optimiser) → resume → data
(shards encoded on the fly, or the latent cache) → train (loss of paper Eq. 2 on
scaled latents, CFG dropout, EMA) → checkpoints and sample grids through the Reporter.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf
from torch import nn

from platform import distributed as dist_
from platform.checkpoint import META_FILE, checkpoint_path, latest_checkpoint, load_checkpoint, save_checkpoint
from platform.config.schema import Conditioning
from platform.ldm.build import build_model, load_frozen_first_stage
from platform.ldm.conditioning import CondInput
from platform.ldm.diffusion import diffusion_loss, make_scheduler
from platform.ldm.ema import Ema
from platform.ldm.latent_cache import build_latent_cache, iterate_latents
from platform.ldm.model import LdmModel
from platform.ldm.pipeline import LdmPipeline, image_grid
from platform.reporting import Reporter
from platform.training.guards import check_finite
from platform.training.optim import scaled_lr
from platform.training.parallel import maybe_no_sync, wrap_ddp
from platform.training.precision import autocast
from platform.training.ray_train import run_training
from platform.training.resume import (
    DataPosition, check_same_semantics, gather_positions, gather_rng_states, my_position, restore_my_rng,
    stream_batches,
)

CHECKPOINT_DIR = "checkpoints"
GRID_SAMPLES = 16
GRID_STEPS = 50  # DDIM steps for periodic sample grids (capped by eval.sampling_steps)


@dataclass
class LdmResult:
    """What a finished LDM run hands to the next stage (evaluation)."""

    checkpoint: Path
    step: int
    final_loss: float
    train_img_per_s: float  # training throughput in the last logging window (all ranks)
    scale_factor: float
    first_stage_checkpoint: Path | None


def _epoch_batches(cfg: DictConfig, cache_dir: Path | None) -> Callable[[int, int], Iterable[dict[str, Any]]]:
    """``(epoch, skip) -> this rank's batches of that epoch``, from the latent cache or the shards."""
    tc = cfg.ldm.train

    def make_epoch(epoch: int, skip: int) -> Iterable[dict[str, Any]]:
        common = dict(batch_size=tc.batch_size, rank=dist_.rank(), world_size=dist_.world_size(),
                      seed=cfg.seed, epoch=epoch, skip_batches=skip, drop_last=True)
        if cache_dir is not None:
            return iterate_latents(cache_dir, **common)
        from platform.data.loader import make_loader

        return make_loader(cfg.data.train_shards, num_workers=cfg.data.loader_workers, resolution=cfg.data.resolution,
                           shuffle_buffer=cfg.data.shuffle_buffer, on_error=cfg.data.on_error, **common)

    return make_epoch


def _meta(cfg: DictConfig, model: LdmModel, first_stage: nn.Module, fs_checkpoint: Path | None,
          positions: list[dict[str, int]], loss: float, img_per_s: float, saved_at: Path) -> dict[str, Any]:
    # The first stage relative to this checkpoint: a moved or remounted work dir still loads.
    relative = os.path.relpath(Path(fs_checkpoint).resolve(), saved_at.resolve()) if fs_checkpoint else None
    return {
        "kind": "ldm",
        "config": OmegaConf.to_container(cfg, resolve=True),
        # The first-stage reference: where to load it and the latent scale it was trained with.
        "first_stage": {"checkpoint": relative,
                        "scale_factor": float(first_stage.scale_factor), "f": int(first_stage.f),
                        "latent_channels": int(first_stage.latent_channels)},
        "latent_size": model.latent_size,
        "data_position": positions,  # one entry per rank
        "loss": loss,
        "train_img_per_s": img_per_s,  # last logging window, all ranks (for run summaries)
    }


@dataclass
class StepParts:
    """Everything one optimiser step touches (built once by the loop, or by the benchmark)."""

    net: nn.Module  # the model, DDP-wrapped under a process group
    model: LdmModel
    ema: Ema
    opt: torch.optim.Optimizer
    scheduler: Any
    first_stage: nn.Module
    cond_input: CondInput
    scale: float
    cfg_dropout: float
    precision: str
    device: torch.device
    seed: int = 0  # with the step, determines every random draw of the step


def step_draws(seed: int, step: int, count: int, shape: tuple[int, ...], num_steps: int
               ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The random draws of one optimiser step for its whole global batch of ``count`` samples:
    ``(u, t, noise)`` with u ~ U[0, 1) (CFG dropout), t ~ U{0..num_steps-1}, noise ~ N(0, I)
    of ``(count, *shape)``, on the CPU.

    A function of (seed, step) only, so the maths of a step does not depend on how its
    batch is split into ranks and micro-batches, nor on whether the run was resumed.
    """
    state = np.random.SeedSequence([int(seed), int(step)]).generate_state(2, dtype=np.uint32)
    gen = torch.Generator().manual_seed(int(state[0]) << 32 | int(state[1]))
    u = torch.rand(count, generator=gen)
    t = torch.randint(0, num_steps, (count,), generator=gen)
    return u, t, torch.randn((count, *shape), generator=gen)


def train_step(p: StepParts, micro_batches: list[dict[str, Any]], step: int = 0) -> tuple[float, int]:
    """Optimiser step number ``step`` (0-based) over ``micro_batches`` (gradient accumulation);
    returns (last loss, images).

    The global batch is ordered micro-batch-major: micro-batch k of rank r holds samples
    ``[(k·world + r)·B, (k·world + r + 1)·B)`` of ``step_draws``.
    """
    images, world, rank = 0, dist_.world_size(), dist_.rank()
    draws = None
    for k, batch in enumerate(micro_batches):
        with torch.no_grad():
            if "latent" in batch:  # latent cache: E(x) was computed once
                z0 = batch["latent"].to(p.device) * p.scale  # (B, c, h, w)
            else:
                z0 = p.first_stage.encode(batch["image"].to(p.device)).float() * p.scale
            cond_in = p.cond_input.prepare(batch)
        size = z0.shape[0]
        if draws is None:
            draws = step_draws(p.seed, step, size * world * len(micro_batches), tuple(z0.shape[1:]),
                               p.scheduler.config.num_train_timesteps)
        mine = slice((k * world + rank) * size, (k * world + rank + 1) * size)
        u, t, noise = (d[mine] for d in draws)
        drop = (u < p.cfg_dropout).to(p.device)  # CFG: y -> null with P = cfg_dropout
        with maybe_no_sync(p.net, k == len(micro_batches) - 1):
            with autocast(p.device, p.precision):
                loss = diffusion_loss(lambda x, t, c: p.net(x, t, c, drop), z0, cond_in, scheduler=p.scheduler,
                                      t=t, noise=noise)
            (loss / len(micro_batches)).backward()
        images += size
    p.opt.step()
    p.opt.zero_grad(set_to_none=True)
    p.ema.update(p.model)
    return float(loss.detach()), images


def train_ldm_worker(
    cfg: DictConfig, run_dir: Path | str, reporter: Reporter, *, first_stage_checkpoint: Path | None = None,
    stop_at: int | None = None,
) -> None:
    """The per-worker LDM loop (single process, or one Ray Train / DDP rank); ``stop_at`` ends it
    after that step without finishing (as a kill would)."""
    run_dir, tc = Path(run_dir), cfg.ldm.train
    device = dist_.device() if tc.use_gpu else torch.device("cpu")
    torch.manual_seed(cfg.seed + dist_.rank())

    # Build networks: the frozen first stage is built here and passed in (STYLE rule 5).
    first_stage = load_frozen_first_stage(first_stage_checkpoint, cfg, device)
    scale = float(first_stage.scale_factor)  # from the first-stage checkpoint, never a literal
    model, cond_input = build_model(cfg, first_stage, device)
    ema = Ema(model, cfg.ldm.ema_decay)
    scheduler = make_scheduler(cfg.ldm.diffusion)

    # Optimiser (AdamW, as CompVis' LatentDiffusion).
    lr = scaled_lr(tc.lr, batch_size=tc.batch_size, grad_accum=tc.grad_accum, world_size=dist_.world_size(),
                   scale=tc.scale_lr)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr)

    # Resume from the newest complete checkpoint of this run.
    step, saved_positions, saved_rng, loss_value, img_per_s = 0, None, None, float("nan"), float("nan")
    found = latest_checkpoint(run_dir / CHECKPOINT_DIR)
    if found is not None:
        states, meta, step = load_checkpoint(found)
        check_same_semantics(meta["config"], cfg, "ldm", run_dir, allow_more_steps=True)
        model.load_state_dict(states["model"])
        ema.load_state_dict(states["ema"])
        opt.load_state_dict(states["opt"])
        saved_positions, saved_rng, loss_value = meta["data_position"], meta.get("rng"), meta.get("loss", loss_value)
        img_per_s = meta.get("train_img_per_s", img_per_s)  # a finished run resumed: keep its speed
        if dist_.is_main():
            print(f"[ldm] resuming {run_dir.name} from step {step} ({found.name})", flush=True)
    net = wrap_ddp(model, device)

    # Data: optionally encode the shards once into a latent cache.
    cache_dir = None
    if cfg.ldm.latent_cache:
        sr = cfg.ldm.cond.sr_factor if Conditioning(cfg.ldm.conditioning) is Conditioning.concat else None
        cache_dir = build_latent_cache(first_stage, cfg.data.train_shards,
                                       Path(cfg.paths.work_dir).resolve() / "latent_cache",
                                       batch_size=tc.batch_size, resolution=cfg.data.resolution, device=device,
                                       sr_factor=sr)
    batches = stream_batches(_epoch_batches(cfg, cache_dir), my_position(saved_positions))

    def save(position: DataPosition) -> Path | None:
        positions = gather_positions(position, device)  # collectives: every rank calls them
        rngs = gather_rng_states()
        if not dist_.is_main():
            return None
        root = run_dir / CHECKPOINT_DIR
        return save_checkpoint(root, step,
                               {"model": model.state_dict(), "ema": ema.state_dict(), "opt": opt.state_dict()},
                               {**_meta(cfg, model, first_stage, first_stage_checkpoint, positions, loss_value,
                                        img_per_s, checkpoint_path(root, step)), "rng": rngs})

    # Train: L_LDM (paper Eq. 2) on z = scale_factor · E(x), y dropped with P = cfg_dropout.
    parts = StepParts(net=net, model=model, ema=ema, opt=opt, scheduler=scheduler, first_stage=first_stage,
                      cond_input=cond_input, scale=scale, cfg_dropout=cfg.ldm.cond.cfg_dropout,
                      precision=tc.precision, device=device, seed=cfg.seed)
    window_start, window_images = time.perf_counter(), 0
    position = my_position(saved_positions)
    restore_my_rng(saved_rng)  # e.g. dropout inside the networks continues its stream
    stop = min(stop_at or tc.steps, tc.steps)
    while step < stop:
        micro_batches = []
        for _ in range(tc.grad_accum):
            batch, position = next(batches)
            micro_batches.append(batch)
        loss, images = train_step(parts, micro_batches, step)
        window_images += images * dist_.world_size()
        step += 1
        loss_value = loss
        check_finite("ldm", {"train/loss": loss_value}, step, tc.check_finite_every)
        if step % tc.log_every == 0 or step == tc.steps:
            img_per_s = window_images / max(time.perf_counter() - window_start, 1e-9)
            reporter.metrics({"train/loss": loss_value, "train/lr": lr, "train/ema_decay": ema.current_decay(),
                              "perf/train_img_per_s": img_per_s}, step)
            window_start, window_images = time.perf_counter(), 0
        reporter.progress(step, tc.steps)
        # The grid before the checkpoint: the saved RNG state is the one the next step sees.
        if cfg.ldm.sample_every and step % cfg.ldm.sample_every == 0 and step < tc.steps:
            _report_grid(cfg, model, ema, first_stage, cond_input, scale, reporter, step)
        if step % tc.ckpt_every == 0 and step < tc.steps:
            save(position)
    if step < tc.steps:
        return  # stopped on purpose (stop_at): no final checkpoint or grid, like a killed run

    save(position)
    _report_grid(cfg, model, ema, first_stage, cond_input, scale, reporter, step)
    dist_.barrier()


def _report_grid(cfg: DictConfig, model: LdmModel, ema: Ema, first_stage: nn.Module, cond_input: CondInput,
                 scale: float, reporter: Reporter, step: int) -> None:
    """A DDIM sample grid from the EMA weights (first 16 samples of seed ``cfg.seed``)."""
    if not dist_.is_main():
        return
    import copy

    ema_model = ema.copy_to(copy.deepcopy(model)).eval()
    pipeline = LdmPipeline(ema_model, first_stage, cond_input, scale, cfg.ldm.diffusion,
                           num_classes=cfg.data.num_classes, conditions=_grid_conditions(cfg))
    if pipeline.model.mode in (Conditioning.text, Conditioning.concat) and pipeline.conditions is None:
        return
    steps = min(GRID_STEPS, *cfg.eval.sampling_steps)
    images = pipeline.generate(range(GRID_SAMPLES), seed=cfg.seed, steps=steps, eta=cfg.eval.eta,
                               guidance_scale=cfg.eval.guidance_scale)
    reporter.image(image_grid(images), f"samples/step_{step:08d}.png")


def _grid_conditions(cfg: DictConfig) -> Any:
    """Captions or low-res images of the first held-out samples (text / concat grids)."""
    mode = Conditioning(cfg.ldm.conditioning)
    if mode not in (Conditioning.text, Conditioning.concat):
        return None
    from platform.ldm.held_out import held_out_conditions

    return held_out_conditions(cfg, GRID_SAMPLES)


def _worker_entry(config: dict[str, Any]) -> None:
    """Ray Train's ``train_loop_per_worker``: rebuild the config and run the loop."""
    train_ldm_worker(OmegaConf.create(config["cfg"]), Path(config["run_dir"]), config["reporter"],
                     first_stage_checkpoint=config["first_stage_checkpoint"], stop_at=config.get("stop_at"))


def train_ldm(
    cfg: DictConfig, run_dir: Path | str, reporter: Reporter, *, first_stage_checkpoint: Path | None = None,
    stop_at: int | None = None, use_ray: bool | None = None,
) -> LdmResult:
    """Train an LDM on ``cfg.data.train_shards`` over a frozen first stage; resumes if ``run_dir`` has checkpoints.

    In-process for one CPU worker; Ray Train DDP workers otherwise (gloo on CPU, NCCL on
    GPU) via ``platform.training.ray_train.run_training``.

    Args:
        cfg: the composed config.
        run_dir: this run's directory (relaunch with the same one to resume).
        reporter: metrics, sample grids, progress (rank 0 logs).
        first_stage_checkpoint: the trained first stage; None for the f = 1 identity.
        stop_at: stop after this step without finishing (tests of resume); the result is
            then the newest checkpoint so far.
        use_ray: force or forbid Ray Train; None: Ray when ``train.num_workers > 1`` or ``train.use_gpu``.
    """
    run_dir = Path(run_dir).resolve()
    tc = cfg.ldm.train
    config = {"cfg": OmegaConf.to_container(cfg, resolve=True), "run_dir": str(run_dir), "reporter": reporter,
              "first_stage_checkpoint": str(first_stage_checkpoint) if first_stage_checkpoint else None,
              "stop_at": stop_at}
    run_training(_worker_entry, config, num_workers=tc.num_workers, use_gpu=tc.use_gpu,
                 name=f"ldm-{run_dir.name}", storage_path=run_dir / "ray", use_ray=use_ray,
                 max_failures=tc.max_failures)
    checkpoint = latest_checkpoint(run_dir / CHECKPOINT_DIR)
    if checkpoint is None:
        raise RuntimeError(f"LDM training finished without a checkpoint under {run_dir / CHECKPOINT_DIR}")
    meta, step = checkpoint_meta(checkpoint)
    return LdmResult(checkpoint=checkpoint, step=step, final_loss=float(meta["loss"]),
                     train_img_per_s=float(meta.get("train_img_per_s", float("nan"))),
                     scale_factor=float(meta["first_stage"]["scale_factor"]),
                     first_stage_checkpoint=Path(first_stage_checkpoint) if first_stage_checkpoint else None)


def checkpoint_meta(path: Path | str) -> tuple[dict[str, Any], int]:
    """``(meta, step)`` of a checkpoint without reading its tensors."""
    doc = json.loads((Path(path) / META_FILE).read_text())
    return doc["meta"], int(doc["step"])
