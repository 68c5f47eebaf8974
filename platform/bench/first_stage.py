"""``python -m platform.bench first_stage``: the platform's first-stage training step vs a bare loop.

Both sides train the same autoencoder, discriminator and LPIPS on the same batch size
with the GAN on (``disc_start=0``): the platform side is ``train_first_stage`` reading
webdataset shards (loader, logging, DDP helpers, autocast), the bare side a plain
PyTorch loop over batches already in memory. Prints images/s of each and their ratio
(target >= 0.95). Each side's figure is batch / median step time, which shrugs off the
load spikes of a shared CPU box; the bare loop runs before and after the platform one.
The loader reads in-process (``loader_workers=0``): on 2 cores a worker process only
competes with the step it would feed.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path
from typing import Mapping

import torch

from platform.distributed import device as local_device


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--first-stage", default="kl_f8", help="preset in conf/first_stage (default kl_f8)")
    parser.add_argument("--steps", type=int, default=20, help="measured steps per side")
    parser.add_argument("--warmup", type=int, default=5, help="unmeasured steps first")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--base-channels", type=int, default=32)
    parser.add_argument("--resolution", type=int, default=32)
    parser.add_argument("--shards", default=None, help="train shard dir (default: digits shards built in a temp dir)")
    parser.add_argument("--gpu", action="store_true", help="train on CUDA with bf16 autocast")


class _StepTimes:
    """A Reporter that keeps ``perf/images_per_s`` per logging window."""

    def __init__(self) -> None:
        self.windows: list[tuple[int, float]] = []

    def metrics(self, values: Mapping[str, float], step: int) -> None:
        if "perf/images_per_s" in values:
            self.windows.append((step, values["perf/images_per_s"]))

    def image(self, image, artifact_file: str) -> None:
        pass

    def artifact(self, local_path, artifact_path=None) -> None:
        pass

    def progress(self, step: int, total: int) -> None:
        pass


def _config(args: argparse.Namespace, shards: Path, work: Path):
    from platform.config.compose import compose_config

    return compose_config([
        "scale=smoke", f"first_stage={args.first_stage}", f"first_stage.base_channels={args.base_channels}",
        "first_stage.disc_start=0", f"first_stage.train.batch_size={args.batch_size}",
        f"first_stage.train.steps={args.warmup + args.steps + 1}", "first_stage.train.log_every=1",
        f"first_stage.train.ckpt_every={args.warmup + args.steps}",
        f"first_stage.train.use_gpu={str(args.gpu).lower()}",
        f"data.train_shards={shards}", f"data.eval_shards={shards}", f"data.resolution={args.resolution}",
        "data.loader_workers=0", f"paths.work_dir={work}",
    ])


def _platform_images_per_s(cfg, work: Path, args: argparse.Namespace) -> float:
    from platform.first_stage.train import train_first_stage

    times = _StepTimes()
    # stop_at: end after the measured steps, before the final checkpoint and evaluation.
    train_first_stage(cfg, work / "platform", times, use_ray=False, stop_at=args.warmup + args.steps)
    seconds = [args.batch_size / ips for step, ips in times.windows if step > args.warmup]
    return args.batch_size / statistics.median(seconds)


def _bare_images_per_s(cfg, batches: list[torch.Tensor], args: argparse.Namespace, device: torch.device) -> float:
    """A plain loop: the same networks and loss maths, no loader, no helpers."""
    from evaluation.lpips import build_lpips
    from platform.first_stage.discriminator import PatchDiscriminator
    from platform.first_stage.model import build_first_stage

    fs = cfg.first_stage
    model = build_first_stage(fs, resolution=args.resolution).to(device).train()
    disc = PatchDiscriminator(3, fs.disc_channels, fs.disc_layers).to(device).train()
    lpips = build_lpips(device=device)
    logvar = torch.zeros((), device=device, requires_grad=True)
    opt_ae = torch.optim.Adam([*model.parameters(), logvar], lr=1e-4, betas=(0.5, 0.9))
    opt_d = torch.optim.Adam(disc.parameters(), lr=1e-4, betas=(0.5, 0.9))
    on_gpu = device.type == "cuda"
    amp = torch.autocast("cuda", dtype=torch.bfloat16) if on_gpu else torch.autocast("cpu", enabled=False)
    last = model.last_layer

    def step(x: torch.Tensor) -> None:
        with amp:
            out = model.reconstruct(x)
            rec = out.rec.float()
            rec_loss = (x - rec).abs() + lpips(x, rec).float().view(-1, 1, 1, 1)
            nll = (rec_loss / logvar.exp() + logvar).sum() / x.shape[0]
            reg = out.kl.sum() / x.shape[0] if out.kl is not None else out.codebook
            disc.requires_grad_(False)
            g = -disc(out.rec).float().mean()
            disc.requires_grad_(True)
            gn = torch.autograd.grad(nll, last, retain_graph=True)[0].norm()
            gg = torch.autograd.grad(g, last, retain_graph=True)[0].norm()
            w = (gn / (gg + 1e-4)).clamp(0, 1e4).detach() * fs.disc_weight
            loss = nll + fs.kl_weight * reg + w * g
        loss.backward()
        opt_ae.step(), opt_ae.zero_grad(set_to_none=True)
        with amp:
            real, fake = disc(x).float(), disc(out.rec.detach()).float()
            d_loss = 0.5 * (torch.relu(1 - real).mean() + torch.relu(1 + fake).mean())
        d_loss.backward()
        opt_d.step(), opt_d.zero_grad(set_to_none=True)
        float(loss.detach())  # the platform logs once per window; one sync per step is the bare minimum

    seconds = []
    for i in range(args.warmup + args.steps):
        start = time.perf_counter()
        step(batches[i % len(batches)].to(device, non_blocking=True))  # float(loss) syncs
        seconds.append(time.perf_counter() - start)
    return args.batch_size / statistics.median(seconds[args.warmup:])


def run(args: argparse.Namespace) -> None:
    from platform.data.loader import make_loader

    device = local_device() if args.gpu else torch.device("cpu")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        shards = Path(args.shards) if args.shards else _digits_shards(work / "shards", args.resolution)
        cfg = _config(args, shards.resolve(), work)
        loader = make_loader(shards, batch_size=args.batch_size, resolution=args.resolution, drop_last=True)
        batches = [b["image"] for _, b in zip(range(8), loader)]
        bare_before = _bare_images_per_s(cfg, batches, args, device)
        platform = _platform_images_per_s(cfg, work, args)
        bare_after = _bare_images_per_s(cfg, batches, args, device)
    bare = (bare_before + bare_after) / 2
    print(f"first-stage training step: {args.first_stage}, batch {args.batch_size}, width {args.base_channels}, "
          f"{args.resolution}px, GAN on, {device}")
    print(f"  bare PyTorch loop : {bare:8.2f} images/s  (before {bare_before:.2f}, after {bare_after:.2f})")
    print(f"  platform loop     : {platform:8.2f} images/s")
    print(f"  ratio platform/bare: {platform / bare:.3f}  (target >= 0.95)")


def _digits_shards(root: Path, resolution: int) -> Path:
    from platform.data.build import build_dataset
    from platform.data.sources import digits

    build_dataset(digits("train"), root, size=resolution, samples_per_shard=256, limit=512, progress=False)
    return root
