"""``python -m platform.data build|verify|info``: write, check and describe shard directories.

Examples::

    python -m platform.data build fashion-mnist --split train --out data/fashion_mnist/train
    python -m platform.data build folder --path photos/ --captions captions.jsonl --split train --out data/photos
    python -m platform.data build digits --split test --out /tmp/digits --limit 64
    python -m platform.data verify data/fashion_mnist/train
    python -m platform.data info data/fashion_mnist/train
"""

from __future__ import annotations

import argparse
import sys

from platform.data.imaging import FITS
from platform.data.manifest import DataError, Manifest, load_manifest
from platform.data.sources import FASHION_MNIST_DIR, Source, digits, fashion_mnist, image_folder, lfw_subset

SOURCES = {
    "fashion-mnist": f"Fashion-MNIST idx .gz files (default {FASHION_MNIST_DIR}; --path to override)",
    "folder": "an image folder --path ROOT: ROOT/<class>/<image>, or flat ROOT/<image> (unconditional: "
              "one class, label 0); --captions JSONL optional",
    "digits": "scikit-learn load_digits (bundled, tests); every 5th image is the test split",
    "lfw-subset": "scikit-image lfw_subset (bundled, tests); every 5th image is the test split",
}


def _source(args: argparse.Namespace) -> Source:
    if args.source == "fashion-mnist":
        return fashion_mnist(args.split, args.path)
    if args.source == "folder":
        if not args.path:
            raise DataError("build folder needs --path ROOT (a folder of images or of class sub-folders)")
        return image_folder(args.path, args.split, args.captions)
    if args.source == "digits":
        return digits(args.split)
    return lfw_subset(args.split)


def _cmd_build(args: argparse.Namespace) -> int:
    source = _source(args)  # bad inputs fail here, before torch is imported
    from platform.data.build import build_dataset
    from platform.data.verify import require_sound  # imports torch: only for commands that decode

    manifest = build_dataset(source, args.out, size=args.size, fit=args.fit,
                             samples_per_shard=args.samples_per_shard, seed=args.seed,
                             shuffle=not args.no_shuffle, limit=args.limit, progress=not args.quiet)
    require_sound(args.out)  # read back what was written: hashes, counts, every PNG decodes
    print(f"{args.out}: {manifest.num_samples} samples, {len(manifest.shards)} shards, "
          f"dataset id {manifest.dataset_id}")
    return 0


def _cmd_verify(args: argparse.Namespace) -> int:
    from platform.data.verify import verify_shards

    problems = verify_shards(args.dir, decode=not args.no_decode, progress=not args.quiet)
    if problems:
        print(f"{args.dir}: FAILED, {len(problems)} problem(s):", file=sys.stderr)
        for line in problems:
            print(f"  {line}", file=sys.stderr)
        return 1
    manifest = load_manifest(args.dir)
    print(f"{args.dir}: OK ({manifest.num_samples} samples in {len(manifest.shards)} shards, "
          f"dataset id {manifest.dataset_id})")
    return 0


def format_manifest(manifest: Manifest, *, max_shards: int = 20) -> str:
    """The manifest as an aligned, human-readable table."""
    classes = ", ".join(f"{i}={n}" for i, n in enumerate(manifest.class_names)) or "-"
    if manifest.options.get("unconditional"):
        classes = f"none: unconditional (a flat image folder; every label is 0, {manifest.class_names[0]!r})"
    rows = [("dataset id", manifest.dataset_id), ("name", manifest.name), ("split", manifest.split),
            ("samples", str(manifest.num_samples)), ("shards", str(len(manifest.shards))),
            ("image size", f"{manifest.image_size}x{manifest.image_size}"), ("mode", manifest.mode),
            ("keys", ", ".join(manifest.keys)), ("classes", classes)]
    rows += [(f"option {k}", str(v)) for k, v in sorted(manifest.options.items()) if k != "unconditional"]
    rows += [(f"extra {k}", str(v)) for k, v in sorted(manifest.extra.items())]
    width = max(len(k) for k, _ in rows)
    lines = [f"{k:<{width}}  {v}" for k, v in rows]
    lines += ["", f"{'shard':<20} {'samples':>8} {'bytes':>12}  sha256"]
    for shard in manifest.shards[:max_shards]:
        lines.append(f"{shard.name:<20} {shard.count:>8} {shard.bytes:>12}  {shard.sha256}")
    if len(manifest.shards) > max_shards:
        lines.append(f"... {len(manifest.shards) - max_shards} more shards (--all to list them)")
    return "\n".join(lines)


def _cmd_info(args: argparse.Namespace) -> int:
    manifest = load_manifest(args.dir)
    print(format_manifest(manifest, max_shards=len(manifest.shards) if args.all else 20))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m platform.data", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True, metavar="build|verify|info")

    build = commands.add_parser("build", help="write webdataset shards + manifest.json from a source",
                                description="Write PNG/label/caption samples as tar shards plus manifest.json. "
                                            "Sources: " + "; ".join(f"{k}: {v}" for k, v in SOURCES.items()))
    build.add_argument("source", choices=sorted(SOURCES), help="where the images come from")
    build.add_argument("--split", default="train", help="train | test (bundled sets, Fashion-MNIST); a label for folders")
    build.add_argument("--out", required=True, help="output directory (a previous build there is replaced)")
    build.add_argument("--path", help="Fashion-MNIST idx directory, or the image folder ROOT")
    build.add_argument("--captions", help='folder only: JSONL of {"file_name": "cls/img.png", "caption": "..."}')
    build.add_argument("--size", type=int, default=32, help="square output side in pixels (default 32)")
    build.add_argument("--fit", choices=FITS, help="pad | resize | crop (default: pad for Fashion-MNIST and LFW, "
                                                   "resize for digits, crop for folders)")
    build.add_argument("--samples-per-shard", type=int, default=1000, help="default 1000")
    build.add_argument("--seed", type=int, default=0, help="seed of the write order (default 0)")
    build.add_argument("--no-shuffle", action="store_true", help="write in source order instead of a seeded permutation")
    build.add_argument("--limit", type=int, help="only the first N samples of the source (quick tests)")
    build.add_argument("--quiet", action="store_true", help="no progress lines")
    build.set_defaults(run=_cmd_build)

    verify = commands.add_parser("verify", help="check counts, hashes and samples; name any bad shard",
                                 description="Exit 1 and list every problem (shard, sample key) if any.")
    verify.add_argument("dir", help="shard directory (holds manifest.json)")
    verify.add_argument("--no-decode", action="store_true", help="skip decoding the PNGs (hashes and counts only)")
    verify.add_argument("--quiet", action="store_true", help="no progress lines")
    verify.set_defaults(run=_cmd_verify)

    info = commands.add_parser("info", help="print the manifest as a table", description="Print the manifest.")
    info.add_argument("dir", help="shard directory (holds manifest.json)")
    info.add_argument("--all", action="store_true", help="list every shard (default: first 20)")
    info.set_defaults(run=_cmd_info)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except DataError as exn:
        print(f"error: {exn}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
