"""Trial names are the swept values: distinct, short, the same in MLflow and the report."""

from __future__ import annotations

from platform.config.compose import compose_trials, expand_sweep
from platform.orchestration.naming import trial_names
from platform.orchestration.plan import plan_trials


def test_kl_vs_vq_with_an_lr_axis_gives_eight_distinct_names():
    overrides = ["+experiment=kl_vs_vq", "ldm.train.lr=1e-4,2e-4", "scale=smoke"]
    plans = plan_trials(compose_trials(overrides), expand_sweep(overrides))
    names = [plan.name for plan in plans]
    assert len(set(names)) == 8, names
    assert "f=8 kl lr=1e-4" in names and "f=4 vq lr=2e-4" in names
    assert all("scale" not in name for name in names)  # only what varies


def test_names_from_overrides():
    fs = {"first_stage": {"f": 4, "regularizer": "kl"}}
    identity = {"first_stage": {"f": 1, "regularizer": "none"}}
    # One trial: named by its first stage.
    assert trial_names([["scale=smoke"]], [fs]) == ["f=4 kl"]
    assert trial_names([["first_stage=identity"], ["first_stage=kl_f4"]], [identity, fs]) == ["f=1", "f=4 kl"]
    assert trial_names([["eval.guidance_scale=1.0"], ["eval.guidance_scale=1.5"]], [fs, fs]) == ["s=1.0", "s=1.5"]
    # Same short name on two swept keys: both keep their full names.
    names = trial_names([["ldm.train.lr=0.0001", "first_stage.train.lr=0.0001"],
                         ["ldm.train.lr=0.0002", "first_stage.train.lr=0.003"]], [fs, fs])
    assert names == ["ldm.train.lr=1e-4 first_stage.train.lr=1e-4", "ldm.train.lr=2e-4 first_stage.train.lr=0.003"]
    # Values that differ only in a key nobody shows still get distinct names.
    assert trial_names([["seed=1"], ["seed=2"]], [fs, fs]) == ["seed=1", "seed=2"]
    assert trial_names([["+x=a", "first_stage=kl_f4"], ["+x=b", "first_stage=kl_f4"]], [fs, fs]) == ["x=a", "x=b"]


def test_report_labels_are_the_trial_names(tmp_path, new_sqlite_store):
    """The report labels what the sweep named: eight distinct labels for kl_vs_vq x lr."""
    from platform.report import build_report
    from platform.tracking import TrackingStore

    overrides = ["+experiment=kl_vs_vq", "ldm.train.lr=1e-4,2e-4", "scale=smoke"]
    plans = plan_trials(compose_trials(overrides), expand_sweep(overrides))
    store = TrackingStore(new_sqlite_store(tmp_path / "mlflow.db"))
    exp = store.ensure_experiment("kl_vs_vq", artifact_root=tmp_path / "artifacts")
    sweep = store.start_run(exp, "sweep", {"kind": "sweep"})
    for plan in plans:  # as SweepRunner.open_runs names and tags them
        run = store.start_run(exp, plan.name, {"kind": "trial", "sweep_run_id": sweep, "trial_index": str(plan.index)})
        store.log_params(run, {"first_stage.f": str(plan.cfg.first_stage.f),
                               "first_stage.regularizer": plan.cfg.first_stage.regularizer})
        store.log_metrics(run, {"eval/fid": 100.0 + plan.index}, step=10)
    build_report(store, "kl_vs_vq", sweep, tmp_path / "report")
    rows = (tmp_path / "report" / "comparison.csv").read_text().splitlines()[1:]
    labels = [row.split(",")[0] for row in rows]
    assert labels == [plan.name for plan in plans] and len(set(labels)) == 8
