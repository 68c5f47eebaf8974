"""Command-line front end of ``python -m evaluation`` (parsing only; work is in workers/assets)."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Optional

from evaluation.report import METRICS

EXAMPLES = """examples:
  python -m evaluation assets
  python -m evaluation --fake samples/ --real data/fashion_mnist/train --n 5000 --json eval.json
  python -m evaluation --fake data/digits/test --real data/digits/train --metrics fid,pr --workers 2
"""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m evaluation",
        description="FID / KID / precision-recall / IS of generated images against reference shards "
        "(torch-fidelity semantics, offline Inception weights). `python -m evaluation assets` prepares the weights.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--fake", required=True, help="generated images: a shard directory (manifest.json) or an image folder")
    p.add_argument("--real", help="reference shard directory (or image folder); needed for fid, kid, pr")
    p.add_argument("--n", type=int, help="number of generated images N (default: all)")
    p.add_argument("--n-ref", type=int, help="number of reference images (default: min(N, available))")
    p.add_argument("--metrics", default=",".join(METRICS), help=f"comma-separated subset of {','.join(METRICS)}")
    p.add_argument("--workers", type=int, default=1, help="evaluation workers K (K > 1: Ray actors)")
    p.add_argument("--gpus-per-worker", type=float, default=0.0)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--device", help="cpu / cuda (default: cuda when available)")
    p.add_argument("--kid-subset-size", type=int, default=1000)
    p.add_argument("--kid-subsets", type=int, default=100)
    p.add_argument("--pr-k", type=int, default=3)
    p.add_argument("--inception-weights", help="explicit Inception weights file (weights-inception-2015-12-05-6726825d.pth)")
    p.add_argument("--cache-dir", help="reference statistics cache (default: $LDM_EVAL_CACHE/references)")
    p.add_argument("--no-cache", action="store_true", help="do not read or write cached reference statistics")
    p.add_argument("--json", type=Path, help="write the report as JSON here")
    return p


def build_assets_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m evaluation assets",
                                description="Show where the Inception and LPIPS weights come from, and prepare missing ones.")
    p.add_argument("--inception-weights", help="explicit Inception weights file to check")
    p.add_argument("--no-download", action="store_true", help="never try the network (use caches and bundled packages)")
    p.add_argument("--check", action="store_true", help="only show; do not convert anything")
    return p


def run_assets(args: argparse.Namespace) -> int:
    from evaluation.assets import AssetUnavailable, cache_dir, candidates, resolve_inception, resolve_lpips_vgg
    from evaluation.detector import IS_UNAVAILABLE

    print(f"evaluation cache: {cache_dir()}")
    for name, rows in candidates(args.inception_weights).items():
        print(f"\n{name} — sources in resolution order:")
        for source, location, present in rows:
            print(f"  [{'x' if present else ' '}] {source:<28} {location}")
    status = 0
    resolvers = {"inception": lambda: resolve_inception(args.inception_weights, allow_download=not args.no_download, prepare=not args.check),
                 "lpips-vgg16": lambda: resolve_lpips_vgg(allow_download=not args.no_download, prepare=not args.check)}
    print()
    for name, resolve in resolvers.items():
        try:
            asset = resolve()
        except AssetUnavailable as err:
            print(f"{name}: MISSING — {err}")
            status = 1
            continue
        print(f"{name}: ready ({asset.source}) {asset.path}  sha256 {asset.sha256[:16]}…")
        if name == "inception":
            print("  metrics: fid, kid, pr" + (", is" if asset.has_classifier else f"; is unavailable: {IS_UNAVAILABLE}"))
    return status


def run_evaluate(args: argparse.Namespace) -> int:
    from evaluation.report import parse_metrics
    from evaluation.sources import open_source
    from evaluation.workers import evaluate

    parse_metrics(args.metrics)  # fail on a typo before opening any data
    report = evaluate(
        open_source(args.fake),
        open_source(args.real) if args.real else None,
        metrics=args.metrics,
        num_samples=args.n,
        num_reference=args.n_ref,
        num_workers=args.workers,
        batch_size=args.batch_size,
        cache_dir=args.cache_dir,
        use_cache=not args.no_cache,
        device=args.device,
        gpus_per_worker=args.gpus_per_worker,
        inception_weights=args.inception_weights,
        kid_subsets=args.kid_subsets,
        kid_subset_size=args.kid_subset_size,
        pr_k=args.pr_k,
    )
    print(report.table())
    print(f"reference cache: {report.info.get('reference_cache', '-')}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(report.to_json() + "\n")
        print(f"wrote {args.json}")
    return 0


def main(argv: Optional[list[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        if argv[:1] == ["assets"]:
            return run_assets(build_assets_parser().parse_args(argv[1:]))
        return run_evaluate(build_parser().parse_args(argv))
    except (ValueError, FileNotFoundError, IndexError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except Exception as err:  # AssetUnavailable and data errors carry their fix in the message
        from evaluation.assets import AssetUnavailable

        if isinstance(err, AssetUnavailable):
            print(f"error: {err}", file=sys.stderr)
            return 1
        raise
