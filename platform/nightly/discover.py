"""Find the LDM runs of the chosen experiments and tonight's candidate checkpoints.

Runs come from two places, so neither a run still training nor one added later is missed:
the stage directories of the experiment's trials (keys computed from the composed sweep,
exactly as the sweep computes them, so an LDM training under ``platform.sweep`` or
``platform.train`` is found before any MLflow run points at it) and the experiment's
MLflow runs that point at a stage directory: trial runs (``ldm_key``: trials added on an
earlier sweep's command line) and LDM stage runs (``stage_key``: ``platform.train``, and
runs of older code, whose keys carry another code fingerprint). Candidates are checkpoint directories; whether one is
complete is decided when it is verified (``platform.checkpoint_eval``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Optional, Sequence

from omegaconf import DictConfig, OmegaConf

from platform.checkpoint import list_checkpoints
from platform.config.schema import NightlyPolicy
from platform.config.validate import ConfigError
from platform.evaluate import all_checkpoint_dirs
from platform.orchestration.stage_functions import checkpoint_step

_NOT_SWEPT = ("+experiment=", "experiment=", "nightly.", "+nightly.", "evaluate.")


@dataclass
class RunTarget:
    """One LDM (stage key) of a platform experiment.

    Attributes:
        experiment: the MLflow experiment its runs belong to.
        key: the LDM stage key; ``directory`` is ``<work_dir>/stages/ldm/<key>``.
        cfg: the trial config it is evaluated with (absolute paths).
        trial_runs: MLflow trial runs pointing at it (empty before a sweep logged it).
    """

    experiment: str
    key: str
    directory: Path
    cfg: DictConfig
    trial_runs: list[Any] = field(default_factory=list)

    @property
    def name(self) -> str:
        names = sorted({run.info.run_name for run in self.trial_runs})
        return ",".join(names) if names else f"ldm-{self.key[:8]}"


@dataclass(frozen=True)
class Candidate:
    target: RunTarget
    checkpoint: Path
    step: int
    final: bool  # the step the run trains to (``ldm.train.steps``)


def sweep_overrides(overrides: Sequence[str]) -> list[str]:
    """Command-line overrides that shape the trials (not the experiment choice or nightly knobs)."""
    return [o for o in overrides if not o.startswith(_NOT_SWEPT)]


def parse_since(since: Optional[str]) -> Optional[float]:
    """``nightly.since`` (ISO date or date-time, UTC if no zone) as a POSIX time; None if unset."""
    if not since:
        return None
    try:
        moment = datetime.fromisoformat(str(since))
    except ValueError:
        raise ConfigError(f"nightly.since={since!r} is not an ISO date such as 2026-11-01 or 2026-11-01T18:00") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.timestamp()


def _trial_configs(experiment: str, overrides: Sequence[str]) -> list[DictConfig]:
    from platform.config.compose import compose_trials
    from platform.training.paths import with_absolute_paths

    chosen = [] if experiment == "default" else [f"+experiment={experiment}"]
    return [with_absolute_paths(cfg) for cfg in compose_trials([*chosen, *sweep_overrides(overrides)])]


def discover_targets(cfg: DictConfig, overrides: Sequence[str], store: Any) -> list[RunTarget]:
    """The LDM runs of ``nightly.experiments`` (default: ``experiment.name``), filtered by
    ``nightly.tags`` and ``nightly.since``.

    Args:
        overrides: the command line, applied to every trial of every experiment.
        store: a ``TrackingStore``, or None when the tracking store is unreachable
            (then only stage directories are searched, and tag filters match nothing).

    Raises:
        ConfigError: an unknown experiment or a bad filter.
        platform.data.manifest.DataError: a trial's shards have no manifest.
    """
    from platform.orchestration.keys import trial_keys
    from platform.orchestration.records import stage_dir

    since = parse_since(cfg.nightly.since)
    targets: dict[tuple[str, str], RunTarget] = {}
    for name in list(cfg.nightly.experiments) or [cfg.experiment.name]:
        try:
            trials = _trial_configs(name, overrides)
        except Exception as error:  # noqa: BLE001 - Hydra names the unknown experiment and the choices
            raise ConfigError(f"nightly experiment {name!r}: {str(error).splitlines()[0]}") from None
        experiment = trials[0].tracking.experiment_name or name
        work_dir = trials[0].paths.work_dir
        for trial in trials:
            container = OmegaConf.to_container(trial, resolve=True)
            key = trial_keys(container, ["ldm"]).keys["ldm"]
            targets.setdefault((experiment, key), RunTarget(experiment, key, stage_dir(work_dir, "ldm", key), trial))
        # Runs logged in MLflow: trials (their ldm_key) and LDM stage runs (platform.train, or a
        # sweep of older code: keys include a code fingerprint, so composing finds only today's).
        runs = store.runs(experiment, "tags.kind = 'trial'") + store.runs(
            experiment, "tags.kind = 'stage' and tags.stage = 'ldm'") if store is not None else []
        for run in runs:
            tags = run.data.tags
            key = None if tags.get("stale") == "true" else tags.get("ldm_key") or tags.get("stage_key")
            if key and (experiment, key) not in targets and stage_dir(work_dir, "ldm", key).is_dir():
                targets[(experiment, key)] = RunTarget(experiment, key, stage_dir(work_dir, "ldm", key), trials[0])
            if (experiment, key) in targets and tags.get("kind") == "trial":
                targets[(experiment, key)].trial_runs.append(run)
    chosen = [t for t in targets.values() if all_checkpoint_dirs(t.directory)]
    if cfg.nightly.tags:
        wanted = {str(k): str(v) for k, v in cfg.nightly.tags.items()}
        chosen = [t for t in chosen if any(wanted.items() <= run.data.tags.items() for run in t.trial_runs)]
    if since is not None:
        chosen = [t for t in chosen if max(p.stat().st_mtime for p in all_checkpoint_dirs(t.directory)) >= since]
    return chosen


def candidates(target: RunTarget, policy: str) -> list[Candidate]:
    """Checkpoint directories of ``target`` to consider tonight, oldest first.

    ``all``: every directory. ``newest``: the newest complete checkpoint, plus any newer
    incomplete directory (reported as skipped, so a checkpoint stuck half-written is seen).
    """
    found = all_checkpoint_dirs(target.directory)
    if NightlyPolicy(policy) is NightlyPolicy.newest:
        complete = list_checkpoints(target.directory / "checkpoints")
        if complete:
            found = [p for p in found if p.name >= complete[-1].name]
    final_step = int(target.cfg.ldm.train.steps)
    return [Candidate(target, p, checkpoint_step(p), checkpoint_step(p) == final_step) for p in found]


def tonight(targets: Sequence[RunTarget], policy: str, *, always_final: bool) -> list[Candidate]:
    """Every target's candidates in evaluation order: final checkpoints first when
    ``always_final`` (so a budget never cuts them), then by run and step."""
    ordered = [c for t in targets for c in candidates(t, policy)]
    return sorted(ordered, key=lambda c: not (always_final and c.final))  # stable: keeps run/step order
