"""Turn composed trial configs into a validated plan, and print it."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Sequence

from omegaconf import DictConfig

from platform.config.schema import Regularizer, Stage
from platform.config.validate import ConfigError, latent_shape, validate_config
from platform.orchestration.naming import trial_names


@dataclass(frozen=True)
class TrialPlan:
    """One trial of a sweep: its index, the overrides that made it, its config and name."""

    index: int
    overrides: tuple[str, ...]
    cfg: DictConfig
    name: str = ""  # the swept values, e.g. ``f=8 kl lr=1e-4`` (platform.orchestration.naming)

    @property
    def stages(self) -> list[str]:
        """Stages this trial runs, in order; the f = 1 identity has nothing to train."""
        stages = list(self.cfg.sweep.stages)
        if self.cfg.first_stage.regularizer == Regularizer.none.value:
            stages = [s for s in stages if s != Stage.first_stage.value]
        return stages


def plan_trials(cfgs: Sequence[DictConfig], overrides: Sequence[Sequence[str]]) -> list[TrialPlan]:
    """Validate every trial before anything runs; the error names the trial and key."""
    plans = []
    for index, (cfg, trial_overrides) in enumerate(zip(cfgs, overrides, strict=True)):
        try:
            validate_config(cfg)
        except ConfigError as error:
            raise ConfigError(f"trial {index} ({' '.join(trial_overrides)}): {error}") from None
        plans.append(TrialPlan(index, tuple(trial_overrides), cfg))
    names = trial_names([p.overrides for p in plans], [p.cfg for p in plans])
    return [replace(plan, name=name) for plan, name in zip(plans, names)]


def format_table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A plain aligned text table (no dependency; also used by summaries)."""
    cells = [[str(c) for c in header]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def format_plan(plans: Sequence[TrialPlan]) -> str:
    """The dry-run table: trial, f, regulariser, latent shape, stages, first stage, name."""
    rows = []
    for plan in plans:
        c, h, w = latent_shape(plan.cfg)
        fs = plan.cfg.first_stage
        rows.append(
            [plan.index, fs.f, fs.regularizer, f"{h}x{w}x{c}", " -> ".join(plan.stages), fs.name, plan.name]
        )
    cfg = plans[0].cfg
    title = (
        f"experiment {cfg.experiment.name}, scale {cfg.scale.name}: "
        f"{len(plans)} trial{'s' if len(plans) != 1 else ''}"
    )
    table = format_table(["trial", "f", "regulariser", "latent", "stages", "first stage", "name"], rows)
    return f"{title}\n{table}"
