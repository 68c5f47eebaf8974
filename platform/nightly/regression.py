"""Regression detection: is a new evaluation worse than its baselines, beyond noise?

Baselines: the run's previous evaluation (the latest one logged before this one, at this
step or an earlier one) and, where configured, a pinned champion (the run behind an MLflow
registered-model alias, or the newest run carrying a tag). A metric has regressed when it
moved in the bad direction *and* its interval does not overlap the baseline's
(``evaluation.uncertainty.significantly_different``); values at different N are not
comparable and are reported as such, never as a regression.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, Mapping, Optional, Sequence

from evaluation.uncertainty import metric_from_mlflow, significantly_different

LOWER_IS_BETTER = frozenset({"fid", "kid", "fid_inf"})
Verdict = Literal["regression", "improvement", "within noise", "not comparable"]
_PREFIX = "eval/"
_ANCHOR = "eval/n"  # logged with every evaluation: marks where one evaluation's values are


@dataclass(frozen=True)
class Comparison:
    """One metric of a new evaluation against one baseline."""

    metric: str
    baseline: str  # e.g. "previous (step 15)", "champion ldm-f4@champion"
    new: float
    old: float
    verdict: Verdict
    note: str = ""

    def describe(self) -> str:
        return f"{self.metric} {self.old:.4g} -> {self.new:.4g} vs {self.baseline}: {self.verdict}" + (
            f" ({self.note})" if self.note else "")


def compare(new: Mapping[str, float], old: Mapping[str, float], metrics: Sequence[str], baseline: str) -> list[Comparison]:
    """Compare the ``eval/<m>`` scalars (with ``_lo``/``_hi``/``_std``, ``n``, ``n_ref``) of two evaluations."""
    out = []
    for name in metrics:
        a, b = metric_from_mlflow(new, name, _PREFIX), metric_from_mlflow(old, name, _PREFIX)
        if a is None or b is None:
            continue
        try:
            differ = significantly_different(a, b)
        except ValueError as error:  # different N: FID's bias alone differs
            out.append(Comparison(name, baseline, a.value, b.value, "not comparable", str(error).split(":")[0]))
            continue
        if a.interval is None or b.interval is None:
            out.append(Comparison(name, baseline, a.value, b.value, "not comparable", "no interval logged"))
            continue
        worse = a.value > b.value if name in LOWER_IS_BETTER else a.value < b.value
        verdict: Verdict = ("regression" if worse else "improvement") if differ else "within noise"
        out.append(Comparison(name, baseline, a.value, b.value, verdict))
    return out


def previous_evaluation(store: Any, run_id: str, step: int, before_ms: int) -> Optional[tuple[int, dict[str, float]]]:
    """``(step, eval scalars)`` of the run's latest evaluation logged before ``before_ms``
    at ``step`` or earlier, or None.

    One evaluation's values share a step and (nearly) a timestamp: the anchor ``eval/n``
    picks the evaluation, and each other ``eval/*`` key takes its value at that step
    closest in time to the anchor.
    """
    entries = [(s, t) for s, t, _ in store.metric_entries(run_id, _ANCHOR) if t < before_ms and s <= step]
    if not entries:
        return None
    at_step, at_time = max(entries)
    values: dict[str, float] = {}
    for key in store.get_run(run_id).data.metrics:
        if key.startswith(_PREFIX) and key.count("/") == 1:  # the headline setting only
            near = [(abs(t - at_time), v) for s, t, v in store.metric_entries(run_id, key) if s == at_step and t < before_ms]
            if near:
                values[key] = min(near)[1]
    return at_step, values


def champion_metrics(store: Any, experiment: str, model_alias: Optional[str], run_tag: Optional[str]) -> Optional[tuple[str, dict[str, float]]]:
    """``(label, latest eval scalars)`` of the pinned champion, or None when none is set.

    Args:
        model_alias: ``"name@alias"`` of an MLflow registered model version.
        run_tag: ``"key=value"``: the newest run of ``experiment`` carrying that tag.

    Raises:
        ValueError: a malformed setting, or a champion that cannot be found.
    """
    if model_alias:
        name, sep, alias = str(model_alias).partition("@")
        if not sep or not name or not alias:
            raise ValueError(f"nightly.champion.model_alias={model_alias!r} must look like NAME@ALIAS")
        run = store.get_run(store.alias_run_id(name, alias))
        return f"champion {model_alias}", dict(run.data.metrics)
    if run_tag:
        key, sep, value = str(run_tag).partition("=")
        if not sep or not key:
            raise ValueError(f"nightly.champion.run_tag={run_tag!r} must look like KEY=VALUE")
        runs = store.runs(experiment, f"tags.`{key}` = '{value}'")
        if not runs:
            raise ValueError(f"no run of experiment {experiment!r} has tag {key}={value} (nightly.champion.run_tag)")
        return f"champion {runs[0].info.run_name} ({run_tag})", dict(runs[0].data.metrics)
    return None
