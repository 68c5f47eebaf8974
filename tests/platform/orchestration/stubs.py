"""Stand-in stage functions for fast orchestration tests (importable on Ray workers).

Each appends a line to ``<directory>/calls`` so a test can count how often a stage ran,
and reports a metric through the real reporter (the MLflow writer actor).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


def _count(directory: Path) -> None:
    with open(Path(directory) / "calls", "a") as handle:
        handle.write("run\n")


def first_stage_ok(cfg: Any, directory: Path, reporter: Any, upstream: list) -> dict[str, Any]:
    _count(directory)
    reporter.metrics({"train/rec": 0.5}, 1)
    return {"checkpoint": str(directory / "ckpt"), "step": 1, "scale_factor": 1.0, "summary": {"rec/psnr": 20.0}}


def first_stage_fails(cfg: Any, directory: Path, reporter: Any, upstream: list) -> dict[str, Any]:
    _count(directory)
    raise RuntimeError("first stage exploded on purpose")


def first_stage_fails_for_kl_f8(cfg: Any, directory: Path, reporter: Any, upstream: list) -> dict[str, Any]:
    if cfg.first_stage.name == "kl_f8":
        return first_stage_fails(cfg, directory, reporter, upstream)
    return first_stage_ok(cfg, directory, reporter, upstream)


def ldm_ok(cfg: Any, directory: Path, reporter: Any, upstream: list) -> dict[str, Any]:
    _count(directory)
    assert upstream and upstream[0]["stage"] == "first_stage"  # the shared record reaches every trial
    reporter.metrics({"train/loss": float(cfg.ldm.train.lr)}, 2)
    return {"checkpoint": str(directory / "ckpt"), "step": 2, "summary": {"perf/train_img_per_s": 3.0}}


def ldm_fails_at_high_lr(cfg: Any, directory: Path, reporter: Any, upstream: list) -> dict[str, Any]:
    if cfg.ldm.train.lr > 1.5e-4:
        _count(directory)
        raise ValueError("ldm diverged on purpose")
    return ldm_ok(cfg, directory, reporter, upstream)


def ldm_fails_at_high_lr_after_a_rejected_write(cfg: Any, directory: Path, reporter: Any,
                                                upstream: list) -> dict[str, Any]:
    reporter.metrics({"bad metric name!": 1.0}, 1)  # MLflow refuses the name: a writer failure
    return ldm_fails_at_high_lr(cfg, directory, reporter, upstream)


def ldm_waits(cfg: Any, directory: Path, reporter: Any, upstream: list) -> dict[str, Any]:
    """A stage still running when a test signals the driver: reports a step, then waits (at
    most 60 s) for a ``release`` file in its directory."""
    import time

    _count(directory)
    reporter.metrics({"train/loss": 1.0}, 1)
    deadline = time.time() + 60
    while not (Path(directory) / "release").exists() and time.time() < deadline:
        time.sleep(0.2)
    return {"checkpoint": str(directory / "ckpt"), "step": 1, "summary": {}}
