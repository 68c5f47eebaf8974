"""The sweep's single MLflow writer: one Ray actor owns every write to the store.

SQLite tolerates one writer well and many poorly, and a tracking server prefers
batched calls from one client; routing all stage processes through this actor gives
both. Stages call it fire-and-forget, so training never waits for the store.

Outages: a write the store refuses (after MLflow's short client retries) goes to an
on-disk ``Spool``, and so does every later write until the spool has been replayed, in
order, which keeps each run's history ordered. Replays are tried at most every
``RETRY_INTERVAL_S`` (on the next write, or when the driver calls ``replay``); a sweep
that ends with writes still spooled leaves them for the next writer on the same store.
"""

from __future__ import annotations

import base64
import sys
import time
from pathlib import Path
from typing import Any, Callable, Mapping, Optional

import ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from platform.orchestration.spool import Spool, spool_dir
from platform.tracking import TrackingStore, redact_text

_FORWARDED = ("log_metrics", "log_bytes", "log_artifact", "set_tags", "log_params", "end_run", "log_dataset",
              "link_checkpoint")
RETRY_INTERVAL_S = 5.0


def _refused(error: BaseException) -> bool:
    """The store answered and rejected the write (HTTP 4xx semantics, e.g. an invalid metric
    name): retrying cannot help. Connection errors, timeouts and 5xx/429 are outages."""
    status = getattr(error, "get_http_status_code", lambda: 500)()
    return 400 <= status < 500 and status != 429


class TrackingWriter(TrackingStore):
    """A ``TrackingStore`` whose writes never raise: failures are spooled and replayed."""

    def __init__(self, uri: str, spool_directory: str) -> None:
        super().__init__(uri)
        self.spool = Spool(Path(spool_directory))
        self._last_attempt = 0.0
        self.replayed = 0
        self._last_step: dict[tuple[str, str], int] = {}  # per (run, key): the last step taken
        self._stored: dict[str, dict[str, int]] = {}  # per run: key -> highest step in the store
        self.failures: list[str] = []  # writes the store refused for good (bad input)
        if self.spool:
            self._say(f"{len(self.spool)} tracking writes left by an earlier sweep are replayed first")

    # -- the store's writes, spooled when it is down (actor methods: Ray calls these) ---
    def log_metrics(self, run_id: str, metrics: Mapping[str, float], step: int,
                    timestamp_ms: Optional[int] = None, *, once: bool = True) -> None:
        """``once``: keep only the first value of each (run, key, step), also across driver
        restarts (see ``_unseen`` and ``_apply``); False for deliberate re-logging, such as
        the driver copying a rerun's results onto its trial run."""
        fresh = self._unseen(run_id, metrics, step) if once else dict(metrics)
        if fresh:  # the timestamp is fixed now, so a replay stores the very same point
            self._write("log_metrics", run_id, fresh, step, timestamp_ms=timestamp_ms or int(time.time() * 1000),
                        once=once)

    def log_bytes(self, run_id: str, data: bytes, artifact_file: str) -> None:
        self._write("log_bytes", run_id, base64.b64encode(data).decode(), artifact_file)

    def log_artifact(self, run_id: str, local_path: str, artifact_path: Optional[str] = None) -> None:
        self._write("log_artifact", run_id, local_path, artifact_path)

    def set_tags(self, run_id: str, tags: Mapping[str, str]) -> None:
        self._write("set_tags", run_id, {k: str(v) for k, v in tags.items()})

    def log_params(self, run_id: str, params: Mapping[str, str]) -> None:
        self._write("log_params", run_id, dict(params))

    def end_run(self, run_id: str, status: str = "FINISHED") -> None:
        self._write("end_run", run_id, status)

    def log_dataset(self, run_id: str, *, name: str, digest: str, source: str, context: str,
                    num_samples: int) -> None:
        self._write("log_dataset", run_id, name=name, digest=digest, source=source, context=context,
                    num_samples=num_samples)

    def link_checkpoint(self, experiment_id: str, run_id: str, *, name: str, path: str, step: int) -> None:
        """Spooled like a write (the store's method is idempotent per run and path), so the
        model id is not returned."""
        self._write("link_checkpoint", experiment_id, run_id, name=name, path=path, step=step)

    @staticmethod
    def _say(text: str) -> None:
        print(f"[tracking] {text}", file=sys.stderr, flush=True)

    def _apply(self, entry: dict[str, Any]) -> None:
        args, kwargs = list(entry["args"]), dict(entry["kwargs"])
        if entry["name"] == "log_bytes":
            args[1] = base64.b64decode(args[1])
        if entry["name"] == "log_metrics" and kwargs.pop("once", True):
            self._log_new_points(*args, **kwargs)
            return
        getattr(TrackingStore, entry["name"])(self, *args, **kwargs)

    def _log_new_points(self, run_id: str, metrics: Mapping[str, float], step: int, **kwargs: Any) -> None:
        """Log the points at a step past the highest one the store holds for their key.

        The in-memory filter (``_unseen``) dies with the driver: a rerun that resumes a
        stage from its checkpoint re-logs the steps after it, which the store may already
        hold. So the store's own high-water marks are read once per run (when the store is
        up, i.e. here) and kept current from then on.
        """
        marks = self._stored.get(run_id)
        if marks is None:
            marks = self._stored[run_id] = self.last_steps(run_id)
        fresh = {key: value for key, value in metrics.items() if key not in marks or int(step) > marks[key]}
        if fresh:
            TrackingStore.log_metrics(self, run_id, fresh, step, **kwargs)
            marks.update(dict.fromkeys(fresh, int(step)))

    def _write(self, method: str, *args: Any, **kwargs: Any) -> None:
        """Apply a write now, or spool it (in order) while the store is down or the spool is not empty."""
        entry = {"name": method, "args": list(args), "kwargs": kwargs}
        if self.replay() == 0:
            try:
                self._apply(entry)
                return
            except Exception as error:  # noqa: BLE001 - tracking must never kill training
                if _refused(error):  # retrying cannot help: record it, report it at the end
                    self.failures.append(f"{method}: {redact_text(str(error).splitlines()[0])[:300]}")
                    return
                self._last_attempt = time.time()
                self._say(f"store unreachable ({redact_text(str(error).splitlines()[0])[:200]}); "
                          f"spooling writes to {self.spool.path} until it is back")
        self.spool.append(entry)

    def _unseen(self, run_id: str, metrics: Mapping[str, float], step: int) -> dict[str, float]:
        """The points of ``metrics`` at a step past the last one written for their key.

        A stage restarted after a lost worker resumes from its checkpoint and logs again
        the steps between that checkpoint and the crash: the first value of each step is
        kept, so the run's history has neither gaps nor duplicates.
        """
        fresh = {}
        for key, value in metrics.items():
            last = self._last_step.get((run_id, key))
            if last is None or step > last:
                self._last_step[(run_id, key)] = int(step)
                fresh[key] = value
        return fresh

    def replay(self, force: bool = False) -> int:
        """Deliver spooled writes in order until one fails; returns how many are still pending."""
        if not self.spool or (not force and time.time() - self._last_attempt < RETRY_INTERVAL_S):
            return len(self.spool)
        self._last_attempt = time.time()
        delivered = 0
        try:
            for entry in self.spool.entries:
                try:
                    self._apply(entry)
                except Exception as error:  # noqa: BLE001
                    if not _refused(error):
                        raise
                    self.failures.append(f"{entry['name']}: {redact_text(str(error).splitlines()[0])[:300]}")
                delivered += 1
        except Exception:  # noqa: BLE001 - still down: keep the rest, in order
            pass
        self.spool.drop_first(delivered)
        self.replayed += delivered
        if delivered and not self.spool:
            self._say(f"store is back: {self.replayed} spooled writes delivered")
        return len(self.spool)

    def drain(self, timeout_s: float) -> int:
        """Replay until the spool is empty or ``timeout_s`` passed; returns writes still pending."""
        deadline = time.time() + timeout_s
        while self.replay(force=True) and time.time() < deadline:
            time.sleep(min(RETRY_INTERVAL_S, max(0.0, deadline - time.time())))
        return len(self.spool)

    def call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        """Run any store method (the driver's synchronous calls go through here)."""
        return getattr(self, method)(*args, **kwargs)

    def write_failures(self) -> list[str]:
        """Writes the store refused as invalid (not outages), in order."""
        return list(self.failures)

    def pending(self) -> int:
        """Writes spooled and not yet delivered (also a barrier: actor calls run in order)."""
        return len(self.spool)

    def spool_path(self) -> str:
        return str(self.spool.path)

    def close(self) -> int:
        """Give up the spool file (kept on disk if writes are pending); returns that count."""
        pending = len(self.spool)
        self.spool.close()
        return pending


def start_writer(uri: str, work_dir: Path | str) -> Any:
    """The writer actor, pinned to the driver's node (a SQLite file and the spool live there)."""
    strategy = NodeAffinitySchedulingStrategy(node_id=ray.get_runtime_context().get_node_id(), soft=False)
    return ray.remote(num_cpus=0)(TrackingWriter).options(scheduling_strategy=strategy).remote(
        uri, str(spool_dir(work_dir, uri)))


class ActorSink:
    """What ``MlflowReporter`` writes to inside a stage: forwards calls to the writer actor."""

    def __init__(self, writer: Any) -> None:
        self.writer = writer

    def __getattr__(self, name: str) -> Callable[..., Any]:
        if name not in _FORWARDED:
            raise AttributeError(name)
        # Through ``call``: Ray dispatches ``writer.<name>.remote`` to the class's method,
        # bypassing the per-instance guard, so a rejected write would vanish unrecorded.
        return lambda *args, **kwargs: self.writer.call.remote(name, *args, **kwargs)

    def flush(self, timeout_s: Optional[float] = None) -> None:
        """Wait until every call sent so far has been taken (delivered or spooled)."""
        ray.get(self.writer.pending.remote(), timeout=timeout_s)
