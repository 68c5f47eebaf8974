"""Plug a trained LDM into the evaluation workers: a sample source, and one call for FID/KID/PR.

``LdmSampleSource`` implements ``evaluation.sources.ImageSource``: image i is DDIM/DDPM
sample i of base seed s (its own noise generator and condition), so any split of the
indices over evaluation actors yields the same images. The model is loaded lazily in
the process that first asks for images; the source itself pickles as a few strings.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

import torch
from omegaconf import DictConfig

from platform.config.schema import Conditioning, Sampler


@dataclass(frozen=True)
class SamplerSettings:
    """How samples are drawn; logged with every metric."""

    sampler: str = Sampler.ddim.value
    steps: int = 100
    eta: float = 0.0
    guidance_scale: float = 1.0
    seed: int = 0


class LdmSampleSource:
    """Samples of an LDM checkpoint as an evaluation ``ImageSource`` (uint8 (n, 3, H, W))."""

    def __init__(
        self,
        checkpoint: Path | str,
        settings: SamplerSettings,
        num_samples: int,
        *,
        batch_size: int = 64,
        device: str | None = None,
    ) -> None:
        self.checkpoint = str(Path(checkpoint).resolve())
        self.settings = settings
        self.num_samples = int(num_samples)
        self.batch_size = int(batch_size)
        self.device = device
        self._pipeline = None  # built on first use, never pickled

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_pipeline": None}

    def prepare(self) -> None:
        """Load the checkpoint now (evaluation workers call this before timing)."""
        self._load()

    def _load(self):
        if self._pipeline is None:
            from platform.ldm.load import load_ldm

            device = self.device or ("cuda" if torch.cuda.is_available() else "cpu")
            self._pipeline, _ = load_ldm(self.checkpoint, device=device, num_conditions=self.num_samples)
        return self._pipeline

    def __len__(self) -> int:
        return self.num_samples

    def images(self, indices: Sequence[int]) -> torch.Tensor:
        indices = list(indices)
        if indices and (min(indices) < 0 or max(indices) >= self.num_samples):
            raise IndexError(f"{self.describe()}: indices {min(indices)}..{max(indices)} out of range")
        pipeline, s = self._load(), self.settings
        parts = [
            pipeline.generate(indices[k:k + self.batch_size], seed=s.seed, steps=s.steps, sampler=s.sampler,
                              eta=s.eta, guidance_scale=s.guidance_scale, autocast=True)
            for k in range(0, len(indices), self.batch_size)
        ]
        if not parts:
            size = pipeline.model.latent_size * pipeline.first_stage.f
            return torch.zeros(0, 3, size, size, dtype=torch.uint8)
        return torch.cat(parts)

    def cache_key(self) -> str:
        s = self.settings
        return (f"ldm-{Path(self.checkpoint).parent.parent.name}-{Path(self.checkpoint).name}-{s.sampler}{s.steps}"
                f"-eta{s.eta}-cfg{s.guidance_scale}-seed{s.seed}")

    def describe(self) -> str:
        s = self.settings
        return (f"LDM {self.checkpoint}: {self.num_samples} samples, {s.sampler} {s.steps} steps, eta {s.eta}, "
                f"guidance {s.guidance_scale}, seed {s.seed}")


@dataclass
class LdmEvalResult:
    """Metrics of one sampler setting, with what is needed to compare them (N, settings, speed)."""

    settings: SamplerSettings
    num_samples: int
    images_per_s: float  # sampling + decoding images/s during the evaluation, summed over workers
    metrics: dict[str, float] = field(default_factory=dict)  # name -> value, name_n -> N
    report: Any = None  # the evaluation workers' ``EvalReport`` (unavailable metrics say why)

    def to_dict(self) -> dict[str, Any]:
        return {"settings": asdict(self.settings), "num_samples": self.num_samples,
                "images_per_s": self.images_per_s, "metrics": dict(self.metrics)}


def reference_images(cfg: DictConfig) -> tuple[Any, int | None]:
    """The images samples are compared with, and N_ref (None: the evaluation default, N).

    Super-resolution (concat conditioning): sample i upsamples held-out image i, so the
    ground truth is the first N held-out images themselves, at ``data.resolution``.
    Otherwise: a seeded random draw (``eval.reference_seed``) of the
    ``eval.reference_split`` shards at ``data.resolution``.
    """
    from evaluation.sources import ShardSource

    ev = cfg.eval
    if Conditioning(cfg.ldm.conditioning) is Conditioning.concat:
        held_out = ShardSource(cfg.data.eval_shards, resolution=cfg.data.resolution, subset_seed=None)
        return held_out, min(ev.num_samples, len(held_out))
    shards = cfg.data.train_shards if ev.reference_split == "train" else cfg.data.eval_shards
    return ShardSource(shards, resolution=cfg.data.resolution, subset_seed=ev.reference_seed), None


def evaluate_ldm(
    ldm_checkpoint: Path | str,
    cfg: DictConfig,
    *,
    cache_dir: Path | str,
    num_workers: int | None = None,
    reporter: Any = None,
    step: int | None = None,
) -> list[LdmEvalResult]:
    """FID / KID / precision-recall (``cfg.eval.metrics``) of an LDM, once per ``eval.sampling_steps``.

    Samples ``eval.num_samples`` images with ``eval.sampler`` / ``eta`` / ``guidance_scale``
    / ``seed``, against :func:`reference_images`, on the evaluation workers.
    Also measures sampling throughput (images/s) per step count (the paper's Fig. 7 axes).
    With a ``reporter``, logs ``eval/*`` and ``perf/sample_img_per_s_<steps>`` at ``step``.
    """
    from evaluation.workers import evaluate

    ev = cfg.eval
    real, num_reference = reference_images(cfg)
    results = []
    for steps in ev.sampling_steps:
        settings = SamplerSettings(sampler=ev.sampler, steps=int(steps), eta=float(ev.eta),
                                   guidance_scale=float(ev.guidance_scale), seed=int(ev.seed))
        fake = LdmSampleSource(ldm_checkpoint, settings, ev.num_samples, batch_size=ev.batch_size)
        report = evaluate(fake, real, metrics=list(ev.metrics), num_samples=ev.num_samples, num_reference=num_reference,
                          num_workers=num_workers or ev.num_workers, batch_size=ev.batch_size,
                          cache_dir=cache_dir, gpus_per_worker=ev.gpus_per_worker,
                          inception_weights=ev.inception_weights, kid_subsets=ev.kid_subsets,
                          kid_subset_size=ev.kid_subset_size, pr_k=ev.pr_k,
                          repeats=ev.uncertainty_repeats)
        metrics = report.scalars(prefix="")  # value, N, N_ref and interval of every available metric
        speed = report.throughput["source_images_per_s"]  # generation only, summed over workers
        results.append(LdmEvalResult(settings, ev.num_samples, speed, metrics, report))
        if reporter is not None and step is not None:
            reporter.metrics({**{f"eval/{k}": v for k, v in metrics.items()},
                              f"perf/sample_img_per_s_{steps}": speed}, step)
    return results
