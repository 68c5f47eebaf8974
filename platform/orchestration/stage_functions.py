"""The sweep's three stages behind one signature.

``stage(cfg, directory, reporter, upstream) -> fields`` where ``upstream`` holds the
finished records of the stages it consumes, and the returned fields join the stage's
record: ``checkpoint``, ``step``, ``summary`` (metric name -> value, shown in the sweep
summary and copied onto the trial run), ``unavailable`` (metric -> reason) and, for
evaluation, ``curve`` (metrics at each evaluated LDM step, for Fig. 6) and ``grids``
(a sample-grid PNG per evaluated step, relative to the stage directory; logged on the
trial run too).
Heavy imports stay inside the functions: the orchestrator imports this module.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from omegaconf import DictConfig

from platform.reporting import Reporter

StageFunction = Callable[[DictConfig, Path, Reporter, list], dict]
_REC_METRICS = ("psnr", "ssim", "lpips", "rfid")  # first-stage results shown as rec/*
# Each with its interval (evaluation.reconstruction), and N.
_REC_SHOWN = {f"{name}{suffix}" for name in _REC_METRICS for suffix in ("", "_std", "_lo", "_hi")} | {"n"}


def first_stage(cfg: DictConfig, directory: Path, reporter: Reporter, upstream: list) -> dict[str, Any]:
    from platform.first_stage.train import train_first_stage

    result = train_first_stage(cfg, directory, reporter)
    summary = {f"rec/{name}": value for name, value in result.metrics.items() if name in _REC_SHOWN}
    return {
        "checkpoint": str(result.checkpoint),
        "step": result.step,
        "scale_factor": result.scale_factor,
        "summary": summary,
        "unavailable": {f"rec/{name}": why for name, why in result.unavailable.items()},
    }


def ldm(cfg: DictConfig, directory: Path, reporter: Reporter, upstream: list) -> dict[str, Any]:
    from platform.ldm.train import train_ldm

    first = Path(upstream[0]["checkpoint"]) if upstream else None  # None: the f = 1 identity
    result = train_ldm(cfg, directory, reporter, first_stage_checkpoint=first)
    return {
        "checkpoint": str(result.checkpoint),
        "step": result.step,
        "summary": {"perf/train_img_per_s": result.train_img_per_s},
    }


def evaluation(cfg: DictConfig, directory: Path, reporter: Reporter, upstream: list) -> dict[str, Any]:
    """Evaluate the LDM's kept checkpoints (the FID-vs-steps curve) at every sampling setting.

    Per setting S (e.g. ``ddim50``): ``eval/S/<metric>`` with its N, N_ref and interval
    (``evaluation.uncertainty`` names: ``_std``, ``_lo``, ``_hi``, ``n``, ``n_ref``, ...)
    and ``perf/sample_img_per_s/S``; the first entry of ``eval.sampling_steps`` is the
    headline, also logged as ``eval/<metric>`` etc. Unavailable metrics are returned with
    the reason.
    """
    from evaluation.assets import resolve_inception
    from platform.checkpoint import list_checkpoints, verify_checkpoint
    from platform.ldm.evaluate import evaluate_ldm

    checkpoints = list_checkpoints(Path(upstream[0]["checkpoint"]).parent)
    if cfg.eval.checkpoints == "last":
        checkpoints = checkpoints[-1:]
    cache_dir = Path(cfg.paths.work_dir) / "cache"
    asset = resolve_inception(cfg.eval.inception_weights)  # the weights the workers resolve too
    detector = {"sha256": asset.sha256, "source": asset.source}
    curve, unavailable, identities, grids = [], {}, {}, []
    for index, checkpoint in enumerate(checkpoints):
        reporter.progress(index, len(checkpoints))
        metrics: dict[str, float] = {}
        checkpoint_id = verify_checkpoint(checkpoint)
        for rank, result in enumerate(evaluate_ldm(checkpoint, cfg, cache_dir=cache_dir)):
            setting = f"{result.settings.sampler}{result.settings.steps}"
            identities[_identity(cfg, checkpoint_id, detector["sha256"], result)] = checkpoint_step(checkpoint)
            unavailable.update({f"eval/{name}": m.unavailable for name, m in result.report.metrics.items()
                                if m.value is None})
            metrics.update(result.report.scalars(prefix=f"eval/{setting}/"))
            metrics[f"perf/sample_img_per_s/{setting}"] = result.images_per_s
            if rank == 0:
                metrics.update(result.report.scalars(prefix="eval/"))
                metrics["perf/sample_img_per_s"] = result.images_per_s
        step = checkpoint_step(checkpoint)
        reporter.metrics(metrics, step)
        curve.append({"step": step, "metrics": metrics})
        grid = sample_grid(checkpoint, cfg, directory / "samples" / f"step_{step:08d}.png", reporter)
        grids.append(str(grid.relative_to(directory)))  # records hold paths relative to their stage directory
    reporter.progress(len(checkpoints), len(checkpoints))
    return {"step": curve[-1]["step"], "curve": curve, "summary": curve[-1]["metrics"], "unavailable": unavailable,
            "detector": detector, "identities": identities, "grids": grids}


def _identity(cfg: DictConfig, checkpoint_id: str, detector_sha256: str, result: Any) -> str:
    """The shared evaluation identity (``evaluation.identity``) of one checkpoint and setting.
    The reference id is the reference images' key (shards' content id, resolution, random
    draw); N_ref is what the workers use."""
    from evaluation.identity import eval_settings, evaluation_identity
    from platform.ldm.evaluate import reference_images

    reference, num_reference = reference_images(cfg)
    needs_reference = any(m in cfg.eval.metrics for m in ("fid", "kid", "pr"))
    num_ref = (num_reference or min(result.num_samples, len(reference))) if needs_reference else 0
    return evaluation_identity(
        checkpoint_id=checkpoint_id, eval_settings=eval_settings(cfg, result.settings.steps),
        detector_sha256=detector_sha256, reference_id=reference.cache_key(), num_samples=result.num_samples,
        num_ref=num_ref, seeds=[cfg.eval.seed])



def sample_grid(checkpoint: Path, cfg: DictConfig, path: Path, reporter: Reporter) -> Path:
    """The first 16 evaluation samples of ``checkpoint`` at the headline setting, as a PNG grid
    at ``path`` (same seeds as the evaluation, so these are images the metrics saw)."""
    from platform.ldm.evaluate import LdmSampleSource, SamplerSettings
    from platform.ldm.pipeline import image_grid
    from platform.ldm.train import GRID_SAMPLES
    from platform.tracking import png_bytes

    ev = cfg.eval
    settings = SamplerSettings(sampler=ev.sampler, steps=int(ev.sampling_steps[0]), eta=float(ev.eta),
                               guidance_scale=float(ev.guidance_scale), seed=int(ev.seed))
    count = min(GRID_SAMPLES, ev.num_samples)
    grid = image_grid(LdmSampleSource(checkpoint, settings, count, batch_size=ev.batch_size).images(range(count)))
    reporter.image(grid, f"samples/{path.name}")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(png_bytes(grid))
    tmp.replace(path)  # a grid on disk is always whole
    return path


def checkpoint_step(checkpoint: Path) -> int:
    """The training step of a checkpoint directory (``step-NNNNNNNN``)."""
    return int(checkpoint.name.split("-")[-1])


STAGE_FUNCTIONS: dict[str, StageFunction] = {
    "first_stage": first_stage,
    "ldm": ldm,
    "eval": evaluation,
}
