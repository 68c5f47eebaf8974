"""``python -m platform.bench eval``: evaluation features/s against torch-fidelity; 2 workers vs 1.

1. The in-process evaluation path (``evaluation.workers.evaluate``, FID on fake + real)
   against ``torch_fidelity.calculate_metrics(fid=True)`` on the same uint8 images, the
   same device and the same weights file; wall time of each includes loading Inception.
   Target: ratio ≥ 1.0.
2. K = 2 Ray actors against K = 1 (one CPU each locally, one GPU each on a cluster),
   from the workers' own images/s, actor start-up excluded. Parallel efficiency =
   (images/s with 2) / (2 × images/s with 1); target ≥ 0.85 where cores allow.
"""

from __future__ import annotations

import argparse
import os
import time

import torch


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--n", type=int, default=32, help="images per set (fake and real each)")
    parser.add_argument("--size", type=int, default=32, help="image side in pixels (resized to 299² inside)")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--workers", type=int, default=2, help="K for the parallel comparison (against K = 1)")
    parser.add_argument("--skip-ray", action="store_true", help="only the torch-fidelity comparison")
    parser.add_argument("--skip-fidelity", action="store_true", help="only the workers comparison")


class UInt8Images(torch.utils.data.Dataset):
    """torch-fidelity takes a Dataset of uint8 (3, H, W) tensors."""

    def __init__(self, x: torch.Tensor) -> None:
        self.x = x

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int) -> torch.Tensor:
        return self.x[i]


def _images(n: int, size: int, seed: int) -> torch.Tensor:
    # Smooth random images (upsampled noise): realistic cost for the resize and the convs.
    g = torch.Generator().manual_seed(seed)
    x = torch.nn.functional.interpolate(torch.rand(n, 3, max(1, size // 4), max(1, size // 4), generator=g), size=size, mode="bilinear")
    return (x * 255).round().to(torch.uint8)


def run(args: argparse.Namespace) -> None:
    from evaluation.assets import resolve_inception
    from evaluation.sources import TensorSource
    from evaluation.workers import evaluate

    asset = resolve_inception()
    fake, real = _images(args.n, args.size, 0), _images(args.n, args.size, 1)
    print(f"eval benchmark: {args.n}+{args.n} images {args.size}px, batch {args.batch_size}, device {args.device}, "
          f"{os.cpu_count()} CPUs, torch threads {torch.get_num_threads()}, weights {asset.source}")

    if not args.skip_fidelity:
        import torch_fidelity

        t0 = time.perf_counter()
        ours = evaluate(TensorSource(fake), TensorSource(real), metrics="fid", num_workers=0, use_cache=False,
                        batch_size=args.batch_size, device=args.device)
        t_ours = time.perf_counter() - t0
        t0 = time.perf_counter()
        theirs = torch_fidelity.calculate_metrics(
            input1=UInt8Images(fake), input2=UInt8Images(real), fid=True, cuda=args.device.startswith("cuda"),
            feature_extractor_weights_path=str(asset.path), batch_size=args.batch_size, cache=False, verbose=False)
        t_theirs = time.perf_counter() - t0
        rel = abs(ours.metrics["fid"].value - theirs["frechet_inception_distance"]) / abs(theirs["frechet_inception_distance"])
        print(f"  evaluation path : {2 * args.n / t_ours:8.2f} images/s end to end ({t_ours:.1f} s; "
              f"detector alone {ours.throughput['detector_images_per_s']:.2f} images/s)")
        print(f"  torch-fidelity  : {2 * args.n / t_theirs:8.2f} images/s end to end ({t_theirs:.1f} s)")
        print(f"  ratio ours/theirs: {t_theirs / t_ours:.2f}x  (target >= 1.0)   FID rel. diff {rel:.1e}")

    if not args.skip_ray:
        from platform.cluster import ray_init

        ray_init()
        rates = {}
        for k in (1, args.workers):
            report = evaluate(TensorSource(fake), None, metrics="is", num_workers=k, use_ray=True, use_cache=False,
                              batch_size=args.batch_size, gpus_per_worker=1.0 if args.device.startswith("cuda") else 0.0)
            rates[k] = report.throughput["images_per_s"]
            print(f"  Ray, {k} worker(s): {rates[k]:8.2f} images/s")
        efficiency = rates[args.workers] / (args.workers * rates[1])
        print(f"  parallel efficiency {args.workers} vs 1: {efficiency:.2f}  (target >= 0.85 where cores allow)")
