"""The paper's two views of a sweep, built from what MLflow holds.

- Fig. 6: FID against LDM training steps, one curve per trial (``eval/fid`` history,
  logged at the step of each checkpoint evaluated), with 95 % interval error bars.
- Fig. 7: FID against sampling throughput, one point per DDIM step count
  (``eval/<sampler><S>/fid`` against ``perf/sample_img_per_s/<sampler><S>``), with error bars.
- ``comparison.csv`` / ``comparison.md``: the final metrics of every trial with their
  intervals, and which differences are significant.

    python -m platform.report +experiment=downsample_factor [report_sweep=RUN_ID]
"""

from __future__ import annotations

import csv
import re
import sys
from pathlib import Path
from typing import Any, Optional, Sequence

import matplotlib

matplotlib.use("Agg")  # files only; no display on cluster nodes
import matplotlib.pyplot as plt  # noqa: E402
import matplotlib.ticker  # noqa: E402

from evaluation.comparison import format_value, logged_metric, reconstruction_notes, significance_notes  # noqa: E402
from evaluation.uncertainty import METHODS  # noqa: E402
from platform.orchestration.plan import format_table  # noqa: E402
from platform.tracking import STALE_TAG, TrackingStore  # noqa: E402

_PER_STEPS = re.compile(r"^eval/(ddim|ddpm)(\d+)/fid$")
TABLE_METRICS = ["rec/psnr", "rec/ssim", "rec/rfid", "eval/fid", "eval/fid_inf", "eval/kid", "eval/precision", "eval/recall",
                 "eval/is", "eval/n", "eval/n_ref", "perf/train_img_per_s", "perf/sample_img_per_s"]


def _label(run: Any) -> str:
    """A trial's label: its run name, made of its swept values (``f=8 kl lr=1e-4``)."""
    return run.info.run_name


def trial_runs(store: TrackingStore, experiment: str, sweep_run_id: Optional[str]) -> list[Any]:
    """Current trial runs of ``sweep_run_id`` (default: the newest sweep of the experiment);
    trial runs marked stale (their stage results left the sweep) are left out."""
    if sweep_run_id is None:
        sweeps = store.runs(experiment, "tags.kind = 'sweep'")
        if not sweeps:
            return []
        sweep_run_id = sweeps[0].info.run_id
    runs = store.runs(experiment, f"tags.kind = 'trial' and tags.sweep_run_id = '{sweep_run_id}'")
    runs = [r for r in runs if r.data.tags.get(STALE_TAG) != "true"]  # results no longer in the sweep
    return sorted(runs, key=lambda r: int(r.data.tags.get("trial_index", 0)))


def plot_fid_vs_steps(store: TrackingStore, runs: Sequence[Any], path: Path) -> bool:
    fig, ax = plt.subplots(figsize=(6, 4))
    drawn = False
    for run in runs:
        history = store.metric_history(run.info.run_id, "eval/fid")
        if history:
            steps, values = zip(*history)
            bounds = {key: dict(store.metric_history(run.info.run_id, f"eval/fid_{key}")) for key in ("lo", "hi")}
            ax.errorbar(steps, values, yerr=_yerr(steps, values, bounds["lo"], bounds["hi"]), marker="o", capsize=3,
                        label=_label(run))
            drawn = True
    n = runs[0].data.metrics.get("eval/n") if runs else None
    ax.set(xlabel="LDM training step", ylabel=f"FID (N={int(n) if n else '?'})",
           title="FID vs training steps (paper Fig. 6)")
    return _save(fig, ax, path, drawn)


def plot_fid_vs_throughput(runs: Sequence[Any], path: Path) -> bool:
    fig, ax = plt.subplots(figsize=(6, 4))
    drawn = False
    for run in runs:
        points = []
        for name, fid in run.data.metrics.items():
            match = _PER_STEPS.match(name)
            speed = match and run.data.metrics.get(f"perf/sample_img_per_s/{match[1]}{match[2]}")
            if match and speed:
                points.append((speed, fid, int(match[2]), f"eval/{match[1]}{match[2]}/fid"))
        if points:
            points.sort()
            speeds, fids, _, keys = zip(*points)
            low, high = ({k: run.data.metrics.get(f"{k}_{b}") for k in keys} for b in ("lo", "hi"))
            ax.errorbar(speeds, fids, yerr=_yerr(keys, fids, low, high), marker="o", capsize=3, label=_label(run))
            for speed, fid, steps, _ in points:
                ax.annotate(str(steps), (speed, fid), fontsize=7, xytext=(3, 3), textcoords="offset points")
            drawn = True
    ax.set(xscale="log", xlabel="sampling throughput (images/s)", ylabel="FID",
           title="FID vs sampling throughput, labels = DDIM steps (Fig. 7)")
    ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    return _save(fig, ax, path, drawn)


def _yerr(keys: Sequence[Any], values: Sequence[float], low: dict, high: dict) -> Optional[list[list[float]]]:
    """Asymmetric error bars (2, n) from interval bounds keyed like ``keys``; None if any is missing."""
    if any(low.get(k) is None or high.get(k) is None for k in keys):
        return None
    return [[max(0.0, v - low[k]) for k, v in zip(keys, values)], [max(0.0, high[k] - v) for k, v in zip(keys, values)]]


def _save(fig: Any, ax: Any, path: Path, drawn: bool) -> bool:
    """Write the figure if it shows anything; returns whether it was written."""
    if drawn:
        ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(path, dpi=120)
    plt.close(fig)
    return drawn


def write_tables(runs: Sequence[Any], out_dir: Path) -> tuple[Path, Path]:
    """``comparison.csv`` (values and interval bounds) and ``comparison.md`` (value ±
    half-width, then which differences from the best trial are significant)."""
    bounded = [m for m in TABLE_METRICS if m.rpartition("/")[2] in METHODS]  # metrics logged with an interval
    header = ["trial", "f", "regulariser", *TABLE_METRICS, *(f"{m}_{b}" for m in bounded for b in ("lo", "hi"))]
    rows = [[_label(run), run.data.params.get("first_stage.f"), run.data.params.get("first_stage.regularizer"),
             *(run.data.metrics.get(m, "") for m in TABLE_METRICS),
             *(run.data.metrics.get(f"{m}_{b}", "") for m in bounded for b in ("lo", "hi"))] for run in runs]
    csv_path, md_path = out_dir / "comparison.csv", out_dir / "comparison.md"
    with open(csv_path, "w", newline="") as handle:
        csv.writer(handle).writerows([header, *rows])
    shown = [[_label(run), run.data.params.get("first_stage.f"), run.data.params.get("first_stage.regularizer"),
              *(_cell(run.data.metrics, m) for m in TABLE_METRICS)] for run in runs]
    notes = significance_notes([(_label(run), run.data.metrics) for run in runs])
    notes += reconstruction_notes([(run.data.params.get("first_stage.f", 1), run.data.params.get("first_stage.regularizer"),
                                    run.data.metrics) for run in runs])
    text = format_table(header[:3 + len(TABLE_METRICS)], shown) + "\n"
    if notes:
        text += "\n± = half-width of the 95 % interval; significant = intervals do not overlap\n"
        text += "".join(f"- {line}\n" for line in notes)
    md_path.write_text(text)
    return csv_path, md_path


def _cell(metrics: dict[str, float], key: str) -> str:
    metric = logged_metric(metrics, key)
    if metric is not None:
        return format_value(metric)
    value = metrics.get(key, "")
    return f"{value:.4g}" if isinstance(value, float) else value


def build_report(store: TrackingStore, experiment: str, sweep_run_id: Optional[str], out_dir: Path) -> list[Path]:
    """Write the figures and tables for one sweep into ``out_dir``; returns the files."""
    out_dir.mkdir(parents=True, exist_ok=True)
    runs = trial_runs(store, experiment, sweep_run_id)
    if not runs:
        return []
    files = list(write_tables(runs, out_dir))
    if plot_fid_vs_steps(store, runs, out_dir / "fid_vs_steps.png"):
        files.append(out_dir / "fid_vs_steps.png")
    if plot_fid_vs_throughput(runs, out_dir / "fid_vs_throughput.png"):
        files.append(out_dir / "fid_vs_throughput.png")
    return files


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Report the newest (or a given) sweep of an experiment from its MLflow store."""
    from platform.config.compose import compose_config

    args = list(sys.argv[1:] if argv is None else argv)
    if any(a in ("-h", "--help") for a in args):
        print(__doc__)
        return 0
    sweep = next((a.split("=", 1)[1] for a in args if a.startswith("report_sweep=")), None)
    cfg = compose_config([a for a in args if not a.startswith("report_sweep=")])
    from platform.redaction import redact_text
    from platform.tracking import resolve_tracking_uri

    work_dir = Path(cfg.paths.work_dir).resolve()
    experiment = cfg.tracking.experiment_name or cfg.experiment.name
    store = TrackingStore(resolve_tracking_uri(cfg.tracking.uri, work_dir))
    out_dir = work_dir / "reports" / experiment
    files = build_report(store, experiment, sweep, out_dir)
    if not files:
        print(f"no finished sweep of experiment {experiment!r} in {redact_text(store.uri)}", file=sys.stderr)
        return 1
    print("\n".join(str(f) for f in files))
    return 0


if __name__ == "__main__":
    sys.exit(main())
