"""The tracking module against a real SQLite store: layout, reuse, redaction."""

import pytest

from platform.tracking import (
    PARENT_TAG, REDACTED, MlflowReporter, TrackingStore, TrackingUnavailable, flatten_config, redact,
    resolve_tracking_uri,
)


def test_flatten_config_dots_keys_and_redacts_secrets():
    flat = flatten_config({"a": {"b": 1, "c": [1, 2]}, "tracking": {"token": "s3cr3t", "uri": None}})
    assert flat == {"a.b": "1", "a.c": "[1, 2]", "tracking.token": REDACTED, "tracking.uri": "None"}
    assert redact({"db": {"password": "x", "host": "h"}}) == {"db": {"password": REDACTED, "host": "h"}}


def test_store_layout_and_reopening_a_run_does_not_duplicate(tmp_path):
    store = TrackingStore(resolve_tracking_uri(None, tmp_path))
    assert store.uri == f"sqlite:///{tmp_path / 'mlflow.db'}"
    exp = store.ensure_experiment("demo", artifact_root=tmp_path / "art")
    assert store.ensure_experiment("demo") == exp
    parent = store.open_run(exp, "sweep", {"kind": "sweep", "sweep_id": "s1"})
    child = store.open_run(exp, "trial-0", {"kind": "trial", "trial_key": "t0"}, parent)
    assert store.open_run(exp, "trial-0", {"kind": "trial", "trial_key": "t0"}, parent) == child
    assert store.client.get_run(child).data.tags[PARENT_TAG] == parent
    reporter = MlflowReporter(store, child)
    reporter.metrics({"eval/fid": 12.5}, step=100)
    reporter.metrics({"eval/fid": 10.0}, step=200)
    assert store.metric_history(child, "eval/fid") == [(100, 12.5), (200, 10.0)]
    import numpy as np

    reporter.image(np.zeros((8, 8, 3), np.uint8), "samples/grid.png")
    assert [a.path for a in store.client.list_artifacts(child, "samples")] == ["samples/grid.png"]
    store.log_params(child, {"x": "1"})
    store.log_params(child, {"x": "1", "y": "2"})  # params already present are skipped
    assert store.client.get_run(child).data.params == {"x": "1", "y": "2"}
    assert len(store.runs("demo")) == 2


def test_unreachable_server_fails_with_a_hint(monkeypatch):
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "3")
    store = TrackingStore("http://127.0.0.1:9")  # nothing listens on the discard port
    with pytest.raises(TrackingUnavailable, match="mlflow server"):
        store.ensure_experiment("x")


def test_non_finite_metrics_are_logged_not_dropped(tmp_path, new_sqlite_store):
    import math

    store = TrackingStore(new_sqlite_store(tmp_path / "mlflow.db"))
    run = store.start_run(store.ensure_experiment("nan"), "r", {})
    store.log_metrics(run, {"train/loss": float("nan"), "eval/fid": float("inf"), "eval/is": None, "ok": 1.0}, step=3)
    logged = store.client.get_run(run).data.metrics
    assert math.isnan(logged["train/loss"]) and logged["eval/fid"] > 1e300 and logged["ok"] == 1.0
    assert "eval/is" not in logged  # None: not computed, nothing to report


def test_mlflow_tracking_uri_is_used_when_tracking_uri_is_unset(tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5999")
    assert resolve_tracking_uri(None, tmp_path) == "http://127.0.0.1:5999"
    assert resolve_tracking_uri("sqlite:///x.db", tmp_path) == "sqlite:///x.db"  # the config wins
    monkeypatch.delenv("MLFLOW_TRACKING_URI")
    assert resolve_tracking_uri(None, tmp_path) == f"sqlite:///{tmp_path / 'mlflow.db'}"
