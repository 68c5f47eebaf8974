"""What an evaluation returns: each metric with its N, or the reason it is unavailable."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Literal, Optional

from evaluation.uncertainty import Interval, mlflow_metrics

MetricName = Literal["fid", "kid", "pr", "is"]
METRICS: tuple[str, ...] = ("fid", "kid", "pr", "is")


def parse_metrics(metrics: str | list[str] | tuple[str, ...]) -> tuple[MetricName, ...]:
    """Validate metric names (``"fid,kid"`` or a list) against :data:`METRICS`."""
    names = [m.strip().lower() for m in (metrics.split(",") if isinstance(metrics, str) else metrics) if m.strip()]
    bad = [m for m in names if m not in METRICS]
    if bad or not names:
        raise ValueError(f"unknown metric(s) {bad or metrics!r}; choose from {', '.join(METRICS)}")
    return tuple(dict.fromkeys(names))


@dataclass
class MetricResult:
    """One reported number.

    Attributes:
        value: the metric, or None when unavailable.
        n: generated (or evaluated) samples it was computed on.
        n_ref: reference samples (None for IS, which uses no reference).
        std: spread over subsets/splits (KID, IS), when defined.
        unavailable: why there is no value ("unavailable: ..." in tables).
        details: e.g. KID subset size, PR neighbourhood k.
        interval: the value's uncertainty (``evaluation.uncertainty``), when estimable.
        name: the metric (``fid``, ``kid``, ``precision``, ``recall``, ``is``, ``fid_inf``).
    """

    value: Optional[float]
    n: int
    n_ref: Optional[int] = None
    std: Optional[float] = None
    unavailable: Optional[str] = None
    details: dict = field(default_factory=dict)
    interval: Optional[Interval] = None
    name: str = ""


@dataclass
class EvalReport:
    """Metrics by name (``fid``, ``kid``, ``precision``, ``recall``, ``is``) plus throughput."""

    metrics: dict[str, MetricResult]
    throughput: dict[str, float] = field(default_factory=dict)
    info: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        """JSON-ready dict (for ``--json`` and MLflow params/artifacts)."""
        return {"metrics": {k: asdict(v) for k, v in self.metrics.items()}, "throughput": self.throughput, "info": self.info}

    def scalars(self, prefix: str = "eval/") -> dict[str, float]:
        """Available values with N, N_ref and intervals, under the MLflow names of
        ``evaluation.uncertainty`` (``{prefix}fid``, ``{prefix}fid_lo``, ``{prefix}n``, ...)."""
        return mlflow_metrics(self.metrics, prefix)

    def table(self) -> str:
        """Plain-text table: metric, value, N, N_ref; unavailable metrics say why."""
        rows = [("metric", "value", "N", "N_ref", "")]
        for name, m in self.metrics.items():
            value = "-" if m.value is None else f"{m.value:.6g}"
            if m.value is not None and m.interval is not None:
                value += f" [{m.interval.low:.4g}, {m.interval.high:.4g}] ({m.interval.method} x{m.interval.repeats})"
            elif m.value is not None and m.std is not None:
                value += f" ± {m.std:.3g}"
            reason = f"unavailable: {m.unavailable}" if m.value is None else ""
            rows.append((name, value, str(m.n), "-" if m.n_ref is None else str(m.n_ref), reason))
        widths = [max(len(r[i]) for r in rows) for i in range(4)]
        lines = ["  ".join(c.ljust(w) for c, w in zip(r[:4], widths)) + ("  " + r[4] if r[4] else "") for r in rows]
        lines += [f"{key}: {value:.2f}" for key, value in self.throughput.items()]
        return "\n".join(line.rstrip() for line in lines)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)
