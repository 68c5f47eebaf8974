"""Intervals and significance in the sweep summary, the report tables and its figures."""

from __future__ import annotations

from types import SimpleNamespace

from evaluation.uncertainty import Interval, mlflow_metrics
from evaluation.report import MetricResult
from platform.orchestration.render import format_summary
from platform.report import _yerr, plot_fid_vs_steps, plot_fid_vs_throughput, write_tables
from platform.tracking import TrackingStore


def _scalars(fid: float, half: float, prefix: str = "eval/") -> dict[str, float]:
    result = MetricResult(fid, 100, 120, interval=Interval(fid - half, fid + half, half / 1.96, "half-subsample", 10),
                          name="fid")
    return mlflow_metrics({"fid": result}, prefix)


def _rec(psnr: float, half: float, n: int = 200) -> dict[str, float]:
    """A first stage's rec/ scalars as evaluation.reconstruction makes them."""
    return {"rec/psnr": psnr, "rec/psnr_std": half / 1.96, "rec/psnr_lo": psnr - half, "rec/psnr_hi": psnr + half,
            "rec/n": float(n)}


def _trial(index: int, f: int, fid: float, half: float, rec: dict | None = None) -> SimpleNamespace:
    summary = {**_scalars(fid, half), "perf/sample_img_per_s": 3.0}
    records = {"eval": {"summary": summary}, **({"first_stage": {"summary": rec}} if rec else {})}
    return SimpleNamespace(plan=SimpleNamespace(index=index, name=f"f={f} kl"), cfg={"first_stage": {"f": f, "regularizer": "kl"}},
                           records=records, error=None, failed_stage=None, keys={})


def test_summary_shows_intervals_n_ref_and_which_differences_are_significant(tmp_path):
    text = format_summary([_trial(0, 1, 250.0, 10.0), _trial(1, 4, 180.0, 12.0), _trial(2, 8, 175.0, 9.0)], tmp_path)
    assert "250 ±10" in text and "175 ±9" in text and "N_ref" in text and "120" in text
    (line,) = [x for x in text.splitlines() if x.startswith("FID:")]
    assert "best 2 (f=8 kl)" in line and "significantly worse: 0 (f=1 kl)" in line
    assert "not significantly different: 1 (f=4 kl)" in line


def test_summary_reads_reconstruction_along_f_with_its_significance(tmp_path):
    trials = [_trial(0, 1, 250.0, 10.0), _trial(3, 8, 175.0, 9.0, _rec(24.0, 0.2)),  # given out of f order
              _trial(1, 2, 180.0, 12.0, _rec(31.0, 0.4)), _trial(2, 4, 190.0, 12.0, _rec(24.3, 0.3))]
    text = format_summary(trials, tmp_path)
    assert "31 ±0.4" in text  # the PSNR cell shows its interval
    (line,) = [x for x in text.splitlines() if "PSNR along" in x]
    assert line.startswith("kl: PSNR along f=2 (31 ±0.4) > f=4 (24.3 ±0.3) ≈ f=8 (24 ±0.2)")
    assert "1 of 2 steps not significant at this N" in line
    # Two trials at one f (another axis swept): no ordering is claimed.
    text = format_summary([*trials, _trial(4, 8, 170.0, 9.0, _rec(20.0, 0.2))], tmp_path)
    assert "PSNR along" not in text


def test_report_tables_and_figures_carry_the_intervals(tmp_path, new_sqlite_store):
    store = TrackingStore(new_sqlite_store(tmp_path / "mlflow.db"))
    experiment = store.ensure_experiment("report-test", tmp_path / "artifacts")
    for name, f, fids in (("f1", "1", (300.0, 260.0)), ("f8", "8", (200.0, 150.0)), ("f4", "4", (210.0, 170.0))):
        run_id = store.start_run(experiment, name, {"kind": "trial"})
        store.log_params(run_id, {"first_stage.f": f, "first_stage.regularizer": "kl"})
        if f != "1":
            store.log_metrics(run_id, _rec({"4": 28.0, "8": 25.0}[f], 0.5), 0)
        for step, fid in zip((100, 200), fids):
            store.log_metrics(run_id, {**_scalars(fid, 8.0), **_scalars(fid + 20, 8.0, "eval/ddim10/"),
                                       "perf/sample_img_per_s/ddim10": 5.0, **_scalars(fid, 8.0, "eval/ddim20/"),
                                       "perf/sample_img_per_s/ddim20": 2.5}, step)
    runs = sorted(store.runs("report-test"), key=lambda r: r.info.run_name)
    csv_path, md_path = write_tables(runs, tmp_path)
    header = csv_path.read_text().splitlines()[0].split(",")
    assert {"eval/fid_lo", "eval/fid_hi", "eval/fid_inf", "eval/n_ref", "rec/psnr_lo", "rec/psnr_hi"} <= set(header)
    md = md_path.read_text()
    assert "260 ±8" in md and "150 ±8" in md and "28 ±0.5" in md
    assert "FID: best f8 (150 ±8); significantly worse: f1" in md
    assert "kl: PSNR along f=4 (28 ±0.5) > f=8 (25 ±0.5): every step significant" in md
    assert plot_fid_vs_steps(store, runs, tmp_path / "steps.png") and (tmp_path / "steps.png").stat().st_size > 1000
    assert plot_fid_vs_throughput(runs, tmp_path / "speed.png") and (tmp_path / "speed.png").stat().st_size > 1000


def test_error_bars_come_from_the_logged_bounds():
    assert _yerr([100, 200], [10.0, 8.0], {100: 9.0, 200: 5.0}, {100: 12.0, 200: 9.0}) == [[1.0, 3.0], [2.0, 1.0]]
    assert _yerr([100], [10.0], {}, {100: 12.0}) is None  # no interval logged: plain line
