"""The writer never raises into training: with the store down, writes go to the spool in
order; a deleted experiment is refused before anything starts, saying how to restore it."""

from __future__ import annotations

import time

import pytest

from platform.orchestration.spool import spool_dir
from platform.orchestration.writer import TrackingWriter
from platform.tracking import TrackingStore, TrackingUnavailable
from tests.reliability.clusters import free_port


def test_writes_to_a_dead_server_are_spooled_in_order_and_fast(tmp_path):
    uri = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    writer = TrackingWriter(uri, str(spool_dir(tmp_path, uri)))
    started = time.time()
    writer.log_metrics("run", {"train/loss": 1.0}, 1)
    first_s = time.time() - started
    writer.log_metrics("run", {"train/loss": 0.9}, 2)
    writer.log_bytes("run", b"\x89PNG...", "samples/step-2.png")
    writer.log_metrics("run", {"train/loss": 0.95}, 1)  # a restarted stage re-logging step 1
    writer.end_run("run", "FINISHED")
    later_s = time.time() - started - first_s
    assert first_s < 30  # short bounded client retries, not MLflow's ~4 minutes
    assert later_s < 1  # once spooling, writes do not wait for the dead server
    entries = writer.spool.entries
    assert [e["name"] for e in entries] == ["log_metrics", "log_metrics", "log_bytes", "end_run"]
    assert [e["args"][2] for e in entries[:2]] == [1, 2] and entries[0]["kwargs"]["timestamp_ms"] > 0
    lines = writer.spool.path.read_text().splitlines()
    assert len(lines) == 4  # on disk, before the call returned
    assert writer.close() == 4 and writer.spool.path.exists()  # kept for the next writer


def test_a_deleted_experiment_is_refused_with_how_to_restore_it(tmp_path, new_sqlite_store):
    store = TrackingStore(new_sqlite_store(tmp_path / "mlflow.db"))
    experiment_id = store.ensure_experiment("ablation")
    store.client.delete_experiment(experiment_id)
    with pytest.raises(TrackingUnavailable) as raised:
        store.ensure_experiment("ablation")
    message = str(raised.value)
    assert "'ablation'" in message and "was deleted" in message
    assert f"mlflow experiments restore --experiment-id {experiment_id}" in message
    assert "tracking.experiment_name=" in message


def test_a_restarted_driver_does_not_duplicate_steps_the_store_already_holds(tmp_path, new_sqlite_store):
    uri = new_sqlite_store(tmp_path / "mlflow.db")
    store = TrackingStore(uri)
    run = store.start_run(store.ensure_experiment("restart"), "ldm", {"kind": "stage"})
    first = TrackingWriter(uri, str(spool_dir(tmp_path, uri)))
    for step in range(1, 6):
        first.log_metrics(run, {"train/loss": 1.0 / step}, step)
    first.close()
    # A new driver's writer (nothing in memory) gets the steps after the checkpoint again.
    second = TrackingWriter(uri, str(spool_dir(tmp_path, uri)))
    for step in range(3, 8):
        second.log_metrics(run, {"train/loss": 9.0, "train/lr": 0.1}, step)
    second.log_metrics(run, {"eval/fid": 50.0}, 7)
    second.log_metrics(run, {"eval/fid": 40.0}, 7, once=False)  # a deliberate second value
    second.close()
    history = store.metric_history(run, "train/loss")
    assert sorted(step for step, _ in history) == [1, 2, 3, 4, 5, 6, 7]  # no gaps, no duplicates
    assert dict(history)[3] == 1.0 / 3  # the first value of a step is kept
    assert [step for step, _ in store.metric_history(run, "train/lr")] == [3, 4, 5, 6, 7]
    assert sorted(value for _, value in store.metric_history(run, "eval/fid")) == [40.0, 50.0]
