"""One nightly job: discover checkpoints, evaluate tonight's within budget, compare, summarise.

The composition root of ``python -m platform.nightly``. Every checkpoint is handled on
its own (``platform.checkpoint_eval.evaluate_checkpoint`` never raises), so a missing
weights file, an unreadable checkpoint or a dead tracking server fails that checkpoint
and the night goes on. The night is one MLflow run (``kind=nightly``, its date and
scope) holding the summary table; regressions are tagged on the runs they concern.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

from omegaconf import DictConfig, OmegaConf

from platform.checkpoint_eval import EvalContext, Outcome, evaluate_checkpoint, lease_directory
from platform.config.validate import ConfigError, validate_config
from platform.nightly import regression as R
from platform.nightly import summary as S
from platform.nightly.discover import Candidate, discover_targets, sweep_overrides, tonight

# Exit codes (README "Nightly evaluations"): a wrapper pages on 3, and looks at 4.
EXIT_OK = 0  # everything due was evaluated (or already was), no regression
EXIT_SETUP = 2  # bad config, missing data: nothing was evaluated
EXIT_REGRESSION = 3  # at least one run got significantly worse
EXIT_FAILURES = 4  # no regression, but some checkpoint could not be evaluated (skipped or failed)


class _Budget:
    """``nightly.max_checkpoints`` / ``max_minutes``; final checkpoints are exempt when
    ``always_final`` (they are also ordered first)."""

    def __init__(self, nightly: DictConfig, started: float) -> None:
        self.max_checkpoints, self.max_s = int(nightly.max_checkpoints), float(nightly.max_minutes) * 60
        self.always_final, self.started, self.used = bool(nightly.always_final), started, 0

    def gate(self, candidate: Candidate) -> Callable[[], bool]:
        def may_start() -> bool:
            exempt = self.always_final and candidate.final
            over = (self.max_checkpoints and self.used >= self.max_checkpoints) or (
                self.max_s and time.time() - self.started >= self.max_s)
            if exempt or not over:
                self.used += 1
                return True
            return False

        return may_start


def _contexts() -> Callable[[DictConfig], EvalContext]:
    """EvalContext per distinct eval/data config (detector resolved once per night)."""
    cache: dict[str, EvalContext] = {}

    def get(cfg: DictConfig) -> EvalContext:
        key = json.dumps(OmegaConf.to_container(cfg.eval, resolve=True) | {"data": OmegaConf.to_container(cfg.data)},
                         sort_keys=True, default=str)
        if key not in cache:
            cache[key] = EvalContext.from_config(cfg)
        return cache[key]

    return get


def _regressions(store: Any, outcome: Outcome, metrics: Sequence[str],
                 champion: Optional[tuple[str, dict[str, float]]]) -> tuple[Optional[dict[str, float]], list[str]]:
    """The previous evaluation's scalars (for the change column) and the regressions found."""
    previous = R.previous_evaluation(store, outcome.run_ids[0], outcome.step, outcome.started_ms)
    comparisons = []
    if previous is not None:
        comparisons += R.compare(outcome.metrics, previous[1], metrics, f"previous (step {previous[0]})")
    if champion is not None:
        comparisons += R.compare(outcome.metrics, champion[1], metrics, champion[0])
    return (previous[1] if previous else None), [c.describe() for c in comparisons if c.verdict == "regression"]


def _process(store: Any, candidate: Candidate, get_context: Callable[[DictConfig], EvalContext], lease_dir: Path,
             budget: _Budget, metrics: Sequence[str], champion: Any, date: str) -> tuple[Outcome, dict[str, Any]]:
    target = candidate.target
    try:
        ctx = get_context(target.cfg)
    except Exception as error:  # noqa: BLE001 - e.g. no Inception weights: this checkpoint fails, the night goes on
        outcome = Outcome(candidate.checkpoint, candidate.step, "failed", f"{type(error).__name__}: {error}"[:300])
        return outcome, S.row(target.experiment, target.name, outcome, None, [])
    outcome = evaluate_checkpoint(ctx, store, target.experiment, candidate.checkpoint, lease_dir,
                                  may_start=budget.gate(candidate))
    previous, found = None, []
    if outcome.status == "evaluated":
        try:
            previous, found = _regressions(store, outcome, metrics, champion)
            if found:
                for run_id in outcome.run_ids:
                    store.set_tags(run_id, {"nightly.regression": f"{date} step {outcome.step}: " + "; ".join(found)})
        except Exception as error:  # noqa: BLE001 - the numbers are logged; only the comparison is lost
            outcome.reason = f"regression check failed: {type(error).__name__}: {error}"[:300]
    return outcome, S.row(target.experiment, target.name, outcome, previous, found)


def _record_night(store: Any, cfg: DictConfig, scope: str, date: str, rows: list[dict[str, Any]]) -> str:
    """Open (or reopen) the night's run and log the summary of all its ``rows``; returns its id."""
    from platform.orchestration.provenance import git_commit

    work_dir = Path(cfg.paths.work_dir)
    experiment_id = store.ensure_experiment(cfg.nightly.run_experiment, artifact_root=work_dir / "mlartifacts")
    run_id = store.open_run(experiment_id, f"nightly-{date}", {"kind": "nightly", "date": date, "nightly_scope": scope})
    regressions = [r for r in rows if r["regression"]]
    store.set_tags(run_id, {"git_commit": git_commit(), "experiments": ",".join(sorted({r["experiment"] for r in rows})),
                            "regressions": str(len(regressions))})
    counts = {f"nightly/{status}": sum(r["status"] == status for r in rows)
              for status in ("evaluated", "done", "busy", "deferred", "skipped", "failed")}
    store.log_metrics(run_id, {**counts, "nightly/regressions": len(regressions)}, 0)
    store.log_bytes(run_id, S.as_csv(rows).encode(), "summary.csv")
    text = S.as_text(rows)
    listed = "\n".join(f"- {r['run']} step {r['step']}: {r['regression']}" for r in regressions) or "none"
    store.log_bytes(run_id, f"# Nightly evaluation {date}\n\n```\n{text}\n```\n\n## Regressions\n\n{listed}\n".encode(),
                    "summary.md")
    store.end_run(run_id, "FINISHED")
    return run_id


def run_nightly(cfg: DictConfig, overrides: Sequence[str]) -> int:
    """Run one nightly job for the composed ``cfg``; returns the exit code (see EXIT_*).

    Args:
        cfg: the composed config (``nightly`` group, experiment, scale, data, eval, tracking).
        overrides: the command line; those not about the experiment choice or nightly
            knobs are applied to every trial (e.g. ``scale=smoke``, ``data.*``).
    """
    from platform.orchestration.keys import digest
    from platform.tracking import TrackingStore, TrackingUnavailable, resolve_tracking_uri
    from platform.training.paths import with_absolute_paths

    started = time.time()
    date = time.strftime("%Y-%m-%d", time.gmtime(started))
    cfg = with_absolute_paths(cfg)
    if cfg.nightly.nice:  # evaluation yields the CPU to a training run on the same machine
        os.nice(int(cfg.nightly.nice))
    store = TrackingStore(resolve_tracking_uri(cfg.tracking.uri, Path(cfg.paths.work_dir)))
    try:
        validate_config(cfg)
        store.ensure_experiment(cfg.nightly.run_experiment, artifact_root=Path(cfg.paths.work_dir) / "mlartifacts")
        tracking_error = None
    except ConfigError as error:
        print(f"config error: {error}", file=sys.stderr)
        return EXIT_SETUP
    except TrackingUnavailable as error:
        tracking_error = str(error)
        print(f"warning: {tracking_error}; every checkpoint due tonight fails", file=sys.stderr)
    try:
        targets = discover_targets(cfg, overrides, None if tracking_error else store)
        champion = None if tracking_error else R.champion_metrics(
            store, targets[0].experiment if targets else cfg.experiment.name,
            cfg.nightly.champion.model_alias, cfg.nightly.champion.run_tag)
    except Exception as error:  # noqa: BLE001 - config, data or champion problems stop the night before any work
        print(f"cannot run the nightly evaluation: {type(error).__name__}: {error}", file=sys.stderr)
        return EXIT_SETUP
    candidates = tonight(targets, cfg.nightly.policy, always_final=cfg.nightly.always_final)
    print(f"[nightly {date}] {len(targets)} runs, {len(candidates)} checkpoints to look at "
          f"(policy {cfg.nightly.policy})", flush=True)
    budget, get_context, lease_dir = _Budget(cfg.nightly, started), _contexts(), lease_directory(cfg)
    rows, done = [], 0
    for candidate in candidates:
        if tracking_error:
            outcome = Outcome(candidate.checkpoint, candidate.step, "failed", f"tracking unavailable: {tracking_error}"[:300])
            row = S.row(candidate.target.experiment, candidate.target.name, outcome, None, [])
        else:
            outcome, row = _process(store, candidate, get_context, lease_dir, budget, list(cfg.nightly.regression_metrics),
                                    champion, date)
        if outcome.status == "done":  # the common case on a quiet night: counted, not listed
            done += 1
            continue
        rows.append(row)
        print(f"  {outcome.status:9s} {row['run']} step {outcome.step}: "
              f"{row['regression'] or outcome.reason or 'fid=' + S.cell('fid', row['fid'])}", flush=True)
    if rows:
        scope = digest([sorted(cfg.nightly.experiments) or [cfg.experiment.name], sorted(sweep_overrides(overrides))])
        print(S.as_text(rows))
        with S.night_file(lease_dir.parent / "nights" / f"{date}-{scope}.jsonl", rows) as night:
            try:
                if tracking_error is None:
                    run_id = _record_night(store, cfg, scope, date, night)
                    print(f"[nightly {date}] summary logged to run {run_id} (experiment {cfg.nightly.run_experiment})")
            except Exception as error:  # noqa: BLE001 - the summary stays in the state directory
                print(f"warning: could not log the night's summary: {type(error).__name__}: {error}", file=sys.stderr)
    evaluated = sum(r["status"] == "evaluated" for r in rows)
    print(f"[nightly {date}] evaluated {evaluated}, already evaluated {done}, other {len(rows) - evaluated}, "
          f"in {time.time() - started:.1f} s" + ("; nothing new" if not rows else ""))
    if any(r["regression"] for r in rows):
        return EXIT_REGRESSION
    return EXIT_FAILURES if any(r["status"] in ("skipped", "failed") for r in rows) else EXIT_OK
