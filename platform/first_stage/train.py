"""Train a first-stage autoencoder (paper §3.1): one loop, in-process or on Ray Train.

``first_stage_loop(config)`` is the per-worker function (load data, build networks,
optimisers, resume, train, checkpoint, evaluate); ``train_first_stage`` is what the
orchestrator and ``python -m platform.train stage=first_stage`` call.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterator

import torch
from omegaconf import DictConfig, OmegaConf
from torch import nn
from torch.func import functional_call

from platform.checkpoint import latest_checkpoint, load_checkpoint, save_checkpoint
from platform.distributed import all_reduce_sum, barrier, device as local_device, is_main, rank, world_size
from platform.first_stage.discriminator import PatchDiscriminator
from platform.first_stage.evaluate import evaluate_reconstruction
from platform.first_stage.load import CHECKPOINT_KIND
from platform.first_stage.loss import FirstStageLoss
from platform.first_stage.model import FirstStage, build_first_stage
from platform.reporting import Reporter
from platform.training.guards import check_finite
from platform.training.optim import adam, scaled_lr
from platform.training.parallel import maybe_no_sync, unwrap, wrap_ddp
from platform.training.precision import autocast
from platform.training.resume import (
    DataPosition, check_same_semantics, gather_positions, gather_rng_states, my_position, restore_my_rng,
    saved_config, stream_batches,
)
from platform.training.paths import with_absolute_paths
from platform.training.ray_train import run_training

CHECKPOINTS = "checkpoints"
RESULT_FILE = "first_stage_result.json"
KEEP_LAST = 3  # older checkpoints are deleted; each holds weights + both optimisers


@dataclass
class FirstStageResult:
    """What a finished first-stage run hands to the LDM stage."""

    checkpoint: Path
    step: int
    scale_factor: float
    metrics: dict[str, float] = field(default_factory=dict)
    unavailable: dict[str, str] = field(default_factory=dict)  # reconstruction metric -> why not computed


class _Trainee(nn.Module):
    """E, D and the loss's log-variance: what the autoencoder optimiser updates, one DDP unit."""

    def __init__(self, model: FirstStage, loss: FirstStageLoss) -> None:
        super().__init__()
        self.model, self.loss = model, loss

    def forward(self, x: torch.Tensor):  # noqa: ANN201 - a Reconstruction
        return self.model.reconstruct(x)


def make_train_loader(cfg: DictConfig, epoch: int, skip_batches: int, **overrides: Any):
    """This rank's endless stream of training batches from ``epoch``/``skip_batches`` on.

    ``resampled``: epochs follow each other inside the loader, so no rank runs dry before
    another (DDP ranks must take the same number of steps) and resuming reproduces the order.
    """
    from platform.data.loader import make_loader

    args = dict(
        batch_size=cfg.first_stage.train.batch_size, rank=rank(), world_size=world_size(),
        num_workers=cfg.data.loader_workers, seed=cfg.seed, epoch=epoch, resampled=True, shuffle=True,
        resolution=cfg.data.resolution, on_error=cfg.data.on_error,
        shuffle_buffer=cfg.data.shuffle_buffer, drop_last=True, skip_batches=skip_batches,
    )
    return make_loader(cfg.data.train_shards, **{**args, **overrides})


def build_perceptual(fs: DictConfig) -> nn.Module | None:
    """The frozen LPIPS (VGG16) network of the evaluation package, or None if unweighted."""
    if fs.perceptual_weight <= 0:
        return None
    from evaluation.lpips import build_lpips

    return build_lpips()


@torch.no_grad()
def latent_scale_factor(model: FirstStage, first_batch: torch.Tensor) -> float:
    """1/std(z) on the first training batch for KL (LDM ``scale_by_std``), 1.0 otherwise.

    Measured on ``encode``'s default (the posterior mode), i.e. on the latents the LDM
    will diffuse.
    """
    if model.kind != "kl":
        return 1.0
    was_training = model.training
    z = model.eval().encode(first_batch)
    model.train(was_training)
    return float(1.0 / z.float().flatten().std())


def _frozen_logits(disc: nn.Module, rec: torch.Tensor) -> torch.Tensor:
    """D(x̃) with D's weights held fixed, so the generator loss reaches x̃ only (not D)."""
    params = {name: p.detach() for name, p in disc.named_parameters()}
    return functional_call(disc, params, (rec,))


def _codebook_stats(counts: torch.Tensor) -> dict[str, float]:
    """Fraction of codes used and perplexity exp(H(p)) of the code histogram."""
    p = counts / counts.sum().clamp_min(1)
    entropy = -(p * torch.log(p.clamp_min(1e-12))).sum()
    return {"train/codebook_usage": float((counts > 0).float().mean()), "train/perplexity": float(entropy.exp())}


def _train_step(
    trainee: nn.Module,
    disc: nn.Module,
    loss_fn: FirstStageLoss,
    optimisers: tuple[torch.optim.Optimizer, torch.optim.Optimizer],
    stream: Iterator[tuple[dict, DataPosition]],
    step: int,
    tc: DictConfig,
    device: torch.device,
) -> tuple[dict[str, torch.Tensor], DataPosition, torch.Tensor | None, int]:
    """One optimiser step of E/D (and s), then of the discriminator, over ``grad_accum`` micro-batches.

    Returns the step's detached logs (averaged over micro-batches), the data position
    after it, the VQ code indices it used (None for KL) and the number of images.
    """
    opt_ae, opt_d = optimisers
    adversarial = loss_fn.adversarial(step)  # no D passes at all before disc_start
    last = unwrap(trainee).model.last_layer
    trainee.train(), disc.train()
    totals: dict[str, torch.Tensor] = {}
    indices, images = [], 0
    for micro in range(tc.grad_accum):
        batch, position = next(stream)
        x = batch["image"].to(device, non_blocking=True)  # (B, 3, H, W) in [-1, 1]
        sync = micro == tc.grad_accum - 1  # DDP all-reduces on the last micro-batch only
        with maybe_no_sync(trainee, sync):
            with autocast(device, tc.precision):
                out = trainee(x)
                logits_fake = _frozen_logits(unwrap(disc), out.rec) if adversarial else None
                g_loss, logs = loss_fn.generator_loss(x, out, logits_fake, last, step)
            (g_loss / tc.grad_accum).backward()
        if adversarial:
            with maybe_no_sync(disc, sync):
                with autocast(device, tc.precision):
                    d_loss, d_logs = loss_fn.discriminator_loss(disc(x), disc(out.rec.detach()), step)
                (d_loss / tc.grad_accum).backward()
            logs.update(d_logs)
        for k, v in logs.items():
            totals[k] = totals.get(k, 0) + v / tc.grad_accum
        if out.indices is not None:
            indices.append(out.indices)
        images += x.shape[0]
    opt_ae.step(), opt_ae.zero_grad(set_to_none=True)
    if adversarial:
        opt_d.step(), opt_d.zero_grad(set_to_none=True)
    return totals, position, torch.cat(indices) if indices else None, images


def first_stage_loop(config: dict[str, Any]) -> None:
    """Per-worker loop. ``config``: ``cfg`` (resolved dict), ``run_dir`` (absolute), ``reporter``,
    optional ``stop_at`` (end after that step without finishing, as a kill would)."""
    cfg = OmegaConf.create(config["cfg"])
    fs, tc = cfg.first_stage, cfg.first_stage.train
    run_dir, reporter = Path(config["run_dir"]), config["reporter"]
    device = local_device() if tc.use_gpu else torch.device("cpu")
    torch.manual_seed(cfg.seed + rank())

    # build networks
    model = build_first_stage(fs, resolution=cfg.data.resolution, in_channels=cfg.data.channels)
    loss_fn = FirstStageLoss.from_config(fs, build_perceptual(fs))
    trainee = wrap_ddp(_Trainee(model, loss_fn), device)
    disc = wrap_ddp(PatchDiscriminator(cfg.data.channels, fs.disc_channels, fs.disc_layers), device)

    # optimisers: two Adams, lr scaled by global batch (CompVis)
    lr = scaled_lr(tc.lr, batch_size=tc.batch_size, grad_accum=tc.grad_accum, world_size=world_size(),
                   scale=tc.scale_lr)
    opt_ae, opt_d = adam(trainee.parameters(), lr), adam(disc.parameters(), lr)

    # resume (the RNG states are restored just before training, below)
    step, position, ckpt, saved_rng = 0, DataPosition(), latest_checkpoint(run_dir / CHECKPOINTS), None
    if ckpt is not None:
        states, meta, step = load_checkpoint(ckpt)
        check_same_semantics(meta["config"], config["cfg"], "first_stage", run_dir, allow_more_steps=True)
        model.load_state_dict(states["model"])
        if loss_fn.logvar is not None:
            loss_fn.logvar.data.copy_(states["logvar"]["logvar"])
        unwrap(disc).load_state_dict(states["disc"])
        opt_ae.load_state_dict(states["opt_ae"])
        opt_d.load_state_dict(states["opt_disc"])
        position, saved_rng = my_position(meta["data_position"]), meta.get("rng")
        print(f"[first_stage] resuming {run_dir.name} from step {step} ({ckpt.name})", flush=True)
    if is_main():  # scale_by_std uses the run's first batch, whatever step we resume at
        first_batch = next(iter(make_train_loader(cfg, 0, 0, rank=0, world_size=1, num_workers=0)))["image"]

    def save(at: int, pos: DataPosition) -> Path | None:
        positions = gather_positions(pos, device)  # collectives: every rank calls them
        rngs = gather_rng_states()
        path = None
        if is_main():
            states = {"model": model.state_dict(), "disc": unwrap(disc).state_dict(),
                      "opt_ae": opt_ae.state_dict(), "opt_disc": opt_d.state_dict()}
            if loss_fn.logvar is not None:
                states["logvar"] = {"logvar": loss_fn.logvar}
            meta = {"kind": CHECKPOINT_KIND, "first_stage": OmegaConf.to_container(fs, resolve=True),
                    "resolution": cfg.data.resolution, "in_channels": cfg.data.channels,
                    "scale_factor": latent_scale_factor(model, first_batch.to(device)),
                    "data_position": positions, "rng": rngs, "lr": lr, "config": config["cfg"]}
            path = save_checkpoint(run_dir / CHECKPOINTS, at, states, meta, keep_last=KEEP_LAST)
            if at == tc.steps:
                reporter.artifact(path, "checkpoints")
        barrier()
        return path

    # train; a resumed run continues the random streams (KL posterior samples) it saved
    restore_my_rng(saved_rng)
    stream = stream_batches(lambda e, s: make_train_loader(cfg, e, s), position)
    sums: dict[str, torch.Tensor] = {}
    counts = torch.zeros(max(fs.codebook_size, 1), device=device)
    tic, images, window = time.perf_counter(), 0, 0  # window: steps since the last log
    stop_at = min(config.get("stop_at") or tc.steps, tc.steps)
    while step < stop_at:
        logs, position, indices, n_images = _train_step(
            trainee, disc, loss_fn, (opt_ae, opt_d), stream, step, tc, device)
        step += 1
        check_finite("first_stage", {f"train/{k}": logs[k] for k in ("loss", "d") if k in logs}, step,
                     tc.check_finite_every)
        for k, v in logs.items():
            sums[k] = sums.get(k, 0) + v
        if indices is not None:
            counts += torch.bincount(indices, minlength=counts.numel())
        images, window = images + n_images, window + 1

        if step % tc.log_every == 0 or step == stop_at:
            keys = sorted(sums)
            packed = all_reduce_sum(torch.stack([sums[k] for k in keys] + [torch.tensor(float(images), device=device)]))
            values = {f"train/{k}": float(v) / (window * world_size()) for k, v in zip(keys, packed[:-1])}
            values["perf/images_per_s"] = float(packed[-1]) / (time.perf_counter() - tic)
            if fs.regularizer == "vq":
                values.update(_codebook_stats(all_reduce_sum(counts)))
            reporter.metrics(values, step)
            reporter.progress(step, tc.steps)
            if is_main():
                print(f"[first_stage] step {step}/{tc.steps} rec={values['train/rec']:.4f} "
                      f"loss={values['train/loss']:.4f} {values['perf/images_per_s']:.1f} img/s", flush=True)
            sums, images, window, tic = {}, 0, 0, time.perf_counter()
            counts.zero_()
        if step % tc.ckpt_every == 0 or step == tc.steps:
            save(step, position)
    if step < tc.steps:
        return  # interrupted on purpose (stop_at): no result yet, like a killed run

    # evaluate the final weights on the held-out split (rank 0), then hand back the result
    if is_main():
        ckpt = latest_checkpoint(run_dir / CHECKPOINTS)
        _, meta, _ = load_checkpoint(ckpt)
        model.eval()
        metrics, missing, grid = evaluate_reconstruction(model, cfg, device, lpips=loss_fn.perceptual,
                                                         rfid=cfg.first_stage.rfid)
        if not cfg.first_stage.rfid:
            missing["rfid"] = "first_stage.rfid is false (rFID costs 2·N Inception passes)"
        reporter.metrics({f"rec/{name}": value for name, value in metrics.items()}, step)
        for name, why in missing.items():
            print(f"[first_stage] rec/{name} not computed: {why}", flush=True)
        reporter.image(grid, f"reconstructions/step_{step:08d}.png")
        result = FirstStageResult(ckpt, step, float(meta["scale_factor"]), metrics, missing)
        tmp = run_dir / f".{RESULT_FILE}.tmp"
        # The checkpoint relative to the run: the stage directory can move.
        tmp.write_text(json.dumps({**asdict(result), "checkpoint": os.path.relpath(ckpt, run_dir)}))
        os.replace(tmp, run_dir / RESULT_FILE)  # atomic: a result file is always complete
    barrier()


def read_result(run_dir: Path) -> FirstStageResult | None:
    """The result a finished run wrote, or None."""
    path = Path(run_dir) / RESULT_FILE
    if not path.is_file():
        return None
    doc = json.loads(path.read_text())
    return FirstStageResult(Path(run_dir) / doc["checkpoint"], doc["step"], doc["scale_factor"], doc["metrics"],
                            doc.get("unavailable", {}))


def train_first_stage(
    cfg: DictConfig,
    run_dir: Path,
    reporter: Reporter,
    *,
    use_ray: bool | None = None,
    stop_at: int | None = None,
) -> FirstStageResult:
    """Train (or resume, or just return) the first stage that ``cfg.first_stage`` describes.

    Args:
        cfg: the composed run config (validated).
        run_dir: this first stage's directory; checkpoints go to ``run_dir/checkpoints``
            and a relaunch resumes from the newest. Made absolute here.
        reporter: receives ``train/*`` losses, ``perf/images_per_s``, final ``eval/*``
            reconstruction metrics and a reconstruction grid (rank 0 logs).
        use_ray: force or forbid Ray Train; None: Ray when ``train.num_workers > 1`` or
            ``train.use_gpu``.
        stop_at: stop after this step without finishing (tests of resume).
    Returns:
        The final checkpoint, its step, the latent ``scale_factor`` and the metrics.
    """
    if cfg.first_stage.regularizer == "none":
        raise ValueError("first_stage=identity (f=1) is not trained; load it with load_first_stage(None, cfg)")
    cfg = with_absolute_paths(cfg)  # Ray workers run elsewhere (the job's working_dir)
    run_dir = Path(run_dir).resolve()
    run_dir.mkdir(parents=True, exist_ok=True)
    done = read_result(run_dir)
    if done is not None:  # a finished result is reused only for the config it was trained under
        check_same_semantics(saved_config(done.checkpoint), cfg, "first_stage", run_dir, allow_more_steps=True)
        if done.step >= cfg.first_stage.train.steps:
            return done
    tc = cfg.first_stage.train
    loop_config = {"cfg": OmegaConf.to_container(cfg, resolve=True), "run_dir": str(run_dir),
                   "reporter": reporter, "stop_at": stop_at}
    run_training(first_stage_loop, loop_config, num_workers=tc.num_workers, use_gpu=tc.use_gpu,
                 name=f"first_stage-{run_dir.name}", storage_path=run_dir / "ray", use_ray=use_ray,
                 max_failures=tc.max_failures)
    result = read_result(run_dir)
    if result is not None:
        return result
    ckpt = latest_checkpoint(run_dir / CHECKPOINTS)
    if stop_at is None or ckpt is None:
        raise RuntimeError(f"first-stage training in {run_dir} ended without writing {RESULT_FILE}")
    _, meta, step = load_checkpoint(ckpt)  # stopped early on purpose: report where it stands
    return FirstStageResult(ckpt, step, float(meta["scale_factor"]))
