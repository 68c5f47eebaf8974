"""``python -m platform.bench NAME [options]``: the project's benchmark entry point.

Each benchmark is a module ``platform.bench.<NAME>`` exposing ``add_arguments(parser)``
and ``run(args) -> None``; it prints measured throughputs and their ratios from one
run (these machines are noisy, so only ratios taken in the same run compare).
"""

from __future__ import annotations

import argparse
import importlib
import sys

BENCHMARKS = {
    "data": "platform loader vs raw webdataset vs PIL files (images/s)",
    "eval": "evaluation features/s vs torch-fidelity; 2 workers vs 1",
    "first_stage": "first-stage training step vs a bare PyTorch loop (images/s)",
    "ldm": "LDM training step vs a bare loop; latent cache vs on-the-fly encoding",
}


def _parser_for(name: str) -> tuple[argparse.ArgumentParser, object]:
    module = importlib.import_module(f"platform.bench.{name}")
    parser = argparse.ArgumentParser(prog=f"python -m platform.bench {name}", description=BENCHMARKS[name])
    module.add_arguments(parser)
    return parser, module


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    listing = "\n".join(f"  {name:<12} {text}" for name, text in BENCHMARKS.items())
    usage = f"usage: python -m platform.bench NAME|all [options]\n\nbenchmarks:\n{listing}"
    if not argv or argv[0] in ("-h", "--help"):
        print(usage)
        return 0 if argv else 2
    name, rest = argv[0], argv[1:]
    if name not in BENCHMARKS and name != "all":
        print(f"unknown benchmark {name!r}\n\n{usage}", file=sys.stderr)
        return 2
    for each in BENCHMARKS if name == "all" else [name]:
        parser, module = _parser_for(each)
        module.run(parser.parse_args([] if name == "all" else rest))
    return 0


if __name__ == "__main__":
    sys.exit(main())
