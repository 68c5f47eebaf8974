"""The one module that talks to MLflow.

``TrackingStore`` wraps ``MlflowClient`` with the platform's layout (DESIGN.md §1): an
experiment per platform experiment, a parent run per sweep, nested runs per trial and
stage, flattened config params with secrets redacted. During a sweep a single store
instance (in one Ray actor) performs every write, so the embedded SQLite store never
sees concurrent writers; the driver creates the store and experiment first, because
concurrent first use of a fresh SQLite file corrupts it.
``MlflowReporter`` is the ``platform.reporting.Reporter`` that stages log through.
"""

from __future__ import annotations

import io
import json
import logging
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Optional

import numpy as np
from PIL import Image

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
# MLflow's HTTP client retries 7 times with backoff, ~4 minutes per call against a dead
# server. Short, bounded retries make a dead server at start fail in seconds; longer
# outages during a sweep are absorbed by the writer's on-disk spool instead. User
# settings win; platform.cluster forwards them to the workers.
os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
os.environ.setdefault("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "1")
os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")
# urllib3 logs each retry with the request's URL, query string included (a token in
# tracking.uri would be printed); the final error, redacted, says what failed.
logging.getLogger("urllib3.connectionpool").setLevel(logging.ERROR)

from mlflow.entities import (  # noqa: E402
    Dataset, DatasetInput, InputTag, LoggedModelOutput, LoggedModelStatus, Metric, Param, RunStatus, RunTag,
)
from mlflow.tracking import MlflowClient  # noqa: E402
from mlflow.utils.validation import MAX_PARAM_VAL_LENGTH, MAX_PARAMS_TAGS_PER_BATCH  # noqa: E402

from platform.distributed import is_main  # noqa: E402
from platform.redaction import REDACTED, redact, redact_text  # noqa: E402,F401 (REDACTED re-exported)

PARENT_TAG = "mlflow.parentRunId"
STALE_TAG = "stale"  # "true" on runs whose results were replaced or left their sweep
SHARED_VIEW_TAG = "mlflow.sharedViewState."


class TrackingUnavailable(RuntimeError):
    """The tracking store cannot be reached or created; the message says how to fix it."""


def resolve_tracking_uri(uri: Optional[str], work_dir: Path) -> str:
    """``uri`` if set, else ``$MLFLOW_TRACKING_URI``, else the embedded default:
    ``sqlite:///<work_dir>/mlflow.db``."""
    if uri:
        return uri
    if os.environ.get("MLFLOW_TRACKING_URI"):
        return os.environ["MLFLOW_TRACKING_URI"]
    return f"sqlite:///{(Path(work_dir) / 'mlflow.db').resolve()}"


def flatten_config(tree: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """Dotted keys -> string values, secrets redacted (``platform.redaction``)."""
    flat: dict[str, str] = {}
    for key, value in tree.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten_config(value, f"{dotted}."))
        else:
            shown = redact(value, dotted)
            flat[dotted] = str(shown)[:MAX_PARAM_VAL_LENGTH]
    return flat


def png_bytes(image: np.ndarray) -> bytes:
    """Encode a uint8 (H, W, 3) array as PNG."""
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    return buffer.getvalue()


class TrackingStore:
    """MLflow writes and reads for one tracking URI."""

    def __init__(self, uri: str) -> None:
        self.uri = uri
        self._client: Optional[MlflowClient] = None

    @property
    def client(self) -> MlflowClient:
        if self._client is None:
            self._client = MlflowClient(tracking_uri=self.uri)
        return self._client

    # -- experiments and runs -------------------------------------------------
    def ensure_experiment(self, name: str, artifact_root: Optional[Path] = None) -> str:
        """Create (or find) the experiment; fails with ``TrackingUnavailable`` if unreachable."""
        try:
            found = self.client.get_experiment_by_name(name)
            if found is not None and found.lifecycle_stage != "deleted":
                return found.experiment_id
        except Exception as error:  # noqa: BLE001 - any client failure means unusable store
            raise self.unusable(error) from error
        if found is not None:  # deleted (e.g. in the UI): its name stays taken until restored
            raise TrackingUnavailable(redact_text(
                f"MLflow experiment {name!r} (id {found.experiment_id}) in {self.uri} was deleted; restore it "
                f"with `MLFLOW_TRACKING_URI={self.uri} mlflow experiments restore --experiment-id "
                f"{found.experiment_id}` (or in the UI), or choose another name with tracking.experiment_name=NAME"))
        try:
            location = None
            if artifact_root is not None and not self.uri.startswith(("http://", "https://")):
                location = (Path(artifact_root) / name).resolve().as_uri()
            try:
                return self.client.create_experiment(name, artifact_location=location)
            except Exception:  # another process created it first (two jobs started at once)
                found = self.client.get_experiment_by_name(name)
                if found is None:
                    raise
                return found.experiment_id
        except Exception as error:  # noqa: BLE001 - any client failure means unusable store
            raise self.unusable(error) from error

    def unusable(self, error: BaseException) -> TrackingUnavailable:
        """The error for a store that failed a call, with how to fix it."""
        hint = ("start it (mlflow server --host 127.0.0.1 --port PORT) or use tracking=local"
                if self.uri.startswith("http") else "check that the directory is writable")
        return TrackingUnavailable(redact_text(f"MLflow tracking store {self.uri} is unusable: "
                                               f"{str(error).splitlines()[0]}; {hint}"))

    def find_run(self, experiment_id: str, tags: Mapping[str, str]) -> Optional[str]:
        """The id of the newest run carrying all ``tags``, if any."""
        query = " and ".join(f"tags.`{k}` = '{v}'" for k, v in tags.items())
        runs = self.client.search_runs([experiment_id], filter_string=query, max_results=1,
                                       order_by=["attributes.start_time DESC"])
        return runs[0].info.run_id if runs else None

    def start_run(
        self,
        experiment_id: str,
        name: str,
        tags: Mapping[str, str],
        parent_run_id: Optional[str] = None,
    ) -> str:
        all_tags = dict(tags)
        if parent_run_id:
            all_tags[PARENT_TAG] = parent_run_id
        run = self.client.create_run(experiment_id, run_name=name, tags=all_tags)
        return run.info.run_id

    def open_run(self, experiment_id: str, name: str, tags: Mapping[str, str],
                 parent_run_id: Optional[str] = None) -> str:
        """Reuse the run identified by ``tags`` (a relaunch) or start it: never a duplicate.
        A reused run takes ``name`` (names may change between versions; identity does not)."""
        run_id = self.find_run(experiment_id, tags)
        if run_id is None:
            return self.start_run(experiment_id, name, tags, parent_run_id)
        self.client.update_run(run_id, status=RunStatus.to_string(RunStatus.RUNNING), name=name)
        return run_id

    def end_run(self, run_id: str, status: str = "FINISHED") -> None:
        self.client.set_terminated(run_id, status=status)

    # -- values ---------------------------------------------------------------
    def log_params(self, run_id: str, params: Mapping[str, str]) -> None:
        existing = self.client.get_run(run_id).data.params
        new = [Param(k[:250], v) for k, v in params.items() if k[:250] not in existing]
        for start in range(0, len(new), MAX_PARAMS_TAGS_PER_BATCH):
            self.client.log_batch(run_id, params=new[start:start + MAX_PARAMS_TAGS_PER_BATCH])

    def set_tags(self, run_id: str, tags: Mapping[str, str]) -> None:
        items = [RunTag(k, str(v)) for k, v in tags.items()]
        for start in range(0, len(items), MAX_PARAMS_TAGS_PER_BATCH):
            self.client.log_batch(run_id, tags=items[start:start + MAX_PARAMS_TAGS_PER_BATCH])

    def log_metrics(self, run_id: str, metrics: Mapping[str, float], step: int,
                    timestamp_ms: Optional[int] = None) -> None:
        import time

        stamp = timestamp_ms or int(time.time() * 1000)
        # NaN and ±inf are logged (MLflow keeps NaN, clamps inf to ±float max): a diverged
        # value must show in the dashboard, not vanish. None means "not computed".
        batch = [Metric(k, float(v), stamp, int(step)) for k, v in metrics.items() if v is not None]
        if batch:
            self.client.log_batch(run_id, metrics=batch)

    def log_bytes(self, run_id: str, data: bytes, artifact_file: str) -> None:
        """Store ``data`` (an encoded PNG, a YAML text...) as the artifact ``artifact_file``."""
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / Path(artifact_file).name
            path.write_bytes(data)
            parent = str(Path(artifact_file).parent)
            self.client.log_artifact(run_id, str(path), None if parent == "." else parent)

    def log_artifact(self, run_id: str, local_path: str, artifact_path: Optional[str] = None) -> None:
        if Path(local_path).is_dir():
            self.client.log_artifacts(run_id, local_path, artifact_path)
        else:
            self.client.log_artifact(run_id, local_path, artifact_path)

    def log_dataset(self, run_id: str, *, name: str, digest: str, source: str, context: str,
                    num_samples: int) -> None:
        """Record a shard directory as the run's dataset input (MLflow's Dataset column and
        filter): ``digest`` is the manifest's content id, ``context`` the split it serves."""
        dataset = Dataset(name=name, digest=digest, source_type="local",
                          source=json.dumps({"uri": source}), profile=json.dumps({"num_samples": num_samples}))
        self.client.log_inputs(run_id, [DatasetInput(dataset, [InputTag("mlflow.data.context", context)])])

    def link_checkpoint(self, experiment_id: str, run_id: str, *, name: str, path: str, step: int) -> str:
        """Show a checkpoint directory as a logged model of ``run_id`` (the Models column),
        without copying weights: the model carries the path and step as params. Idempotent
        per (run, path); returns the model id."""
        found = self.client.search_logged_models(
            [experiment_id], filter_string=f"source_run_id = '{run_id}' AND params.path = '{path}'", max_results=1)
        if found:
            return found[0].model_id
        model = self.client.create_logged_model(experiment_id, name=name, source_run_id=run_id,
                                                params={"path": path, "step": str(step)},
                                                model_type="checkpoint")
        self.client.finalize_logged_model(model.model_id, LoggedModelStatus.READY)
        self.client.log_outputs(run_id, [LoggedModelOutput(model.model_id, step)])
        return model.model_id

    def share_runs_view(self, experiment_id: str, key: str, *, search_filter: str, order_by_metric: str,
                        metrics: list[str], params: list[str]) -> None:
        """Save a runs-table view that ``#/experiments/<id>/runs?viewStateShareKey=<key>`` opens:
        the runs ``search_filter`` selects, sorted by ``order_by_metric`` (ascending), with
        these metric and param columns shown. This is the state MLflow 3's UI stores when a
        user shares a view (experiment tag ``mlflow.sharedViewState.<key>``, JSON; column ids
        are ``<kind>.`<name>```)."""
        columns = ["attributes.`Dataset`", *(f"metrics.`{m}`" for m in metrics),
                   *(f"params.`{p}`" for p in params), "attributes.`Models`", "attributes.`Source`"]
        state = {"searchFilter": search_filter, "orderByKey": f"metrics.`{order_by_metric}`", "orderByAsc": True,
                 "selectedColumns": columns}
        self.client.set_experiment_tag(experiment_id, f"{SHARED_VIEW_TAG}{key}", json.dumps(state))

    # -- reads (report, tests) ------------------------------------------------
    def run_tags(self, run_id: str) -> dict[str, str]:
        return dict(self.client.get_run(run_id).data.tags)

    def last_steps(self, run_id: str) -> dict[str, int]:
        """Each metric key's highest logged step in the run, in one call: MLflow's "latest"
        value of a key is the one at its highest step (then newest timestamp)."""
        return {metric.key: int(metric.step) for metric in self.client.get_run(run_id).data._metric_objs}

    def metric_history(self, run_id: str, key: str) -> list[tuple[int, float]]:
        return sorted((m.step, m.value) for m in self.client.get_metric_history(run_id, key))

    def get_run(self, run_id: str) -> Any:
        """The run (``info``, ``data.tags``, ``data.metrics``: latest value of each metric)."""
        return self.client.get_run(run_id)

    def experiment_name(self, experiment_id: str) -> str:
        return self.client.get_experiment(experiment_id).name

    def metric_entries(self, run_id: str, key: str) -> list[tuple[int, int, float]]:
        """Every logged value of ``key`` as ``(step, timestamp_ms, value)``, by step, then time."""
        return sorted((m.step, m.timestamp, m.value) for m in self.client.get_metric_history(run_id, key))

    def alias_run_id(self, model: str, alias: str) -> str:
        """The run that produced the registered model version ``model@alias``."""
        return self.client.get_model_version_by_alias(model, alias).run_id

    def runs(self, experiment_name: str, filter_string: str = "") -> list[Any]:
        """All runs of an experiment matching ``filter_string`` (newest first)."""
        experiment = self.client.get_experiment_by_name(experiment_name)
        if experiment is None:
            return []
        return self.client.search_runs([experiment.experiment_id], filter_string=filter_string,
                                       max_results=5000, order_by=["attributes.start_time DESC"])


@dataclass
class MlflowReporter:
    """A ``Reporter`` writing to one MLflow run through ``sink``.

    ``sink`` is a ``TrackingStore`` or any object with the same ``log_metrics`` /
    ``log_bytes`` / ``log_artifact`` methods (the sweep passes a proxy to its writer
    actor). Only rank 0 logs.
    """

    sink: Any
    run_id: str
    on_progress: Optional[Callable[[int, int], None]] = None

    def metrics(self, values: Mapping[str, float], step: int) -> None:
        if is_main():
            self.sink.log_metrics(self.run_id, {k: float(v) for k, v in values.items()}, step)

    def image(self, image: np.ndarray, artifact_file: str) -> None:
        if is_main():
            self.sink.log_bytes(self.run_id, png_bytes(image), artifact_file)

    def artifact(self, local_path: Path, artifact_path: Optional[str] = None) -> None:
        if is_main():
            self.sink.log_artifact(self.run_id, str(local_path), artifact_path)

    def progress(self, step: int, total: int) -> None:
        if is_main() and self.on_progress is not None:
            self.on_progress(step, total)
