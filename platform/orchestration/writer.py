"""The sweep's single MLflow writer: one Ray actor owns every write to the store.

SQLite tolerates one writer well and many poorly, and a tracking server prefers
batched calls from one client; routing all stage processes through this actor gives
both. Stages call it fire-and-forget; a failed write is recorded, not raised into
training, and the driver reports the failures at the end.
"""

from __future__ import annotations

import functools
from typing import Any, Callable

import ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from platform.tracking import TrackingStore

_FORWARDED = ("log_metrics", "log_bytes", "log_artifact", "set_tags", "log_params", "end_run", "log_dataset",
              "link_checkpoint")


class TrackingWriter(TrackingStore):
    """A ``TrackingStore`` whose write errors are collected instead of raised."""

    def __init__(self, uri: str) -> None:
        super().__init__(uri)
        self.failures: list[str] = []
        for name in _FORWARDED:
            setattr(self, name, self._guard(name, getattr(super(), name)))

    def _guard(self, name: str, method: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(method)
        def guarded(*args: Any, **kwargs: Any) -> Any:
            try:
                return method(*args, **kwargs)
            except Exception as error:  # noqa: BLE001 - tracking must never kill training
                self.failures.append(f"{name}: {str(error).splitlines()[0]}")
                return None

        return guarded

    def call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        """Run any store method (the driver's synchronous calls go through here)."""
        return getattr(self, method)(*args, **kwargs)

    def write_failures(self) -> list[str]:
        return list(self.failures)


def start_writer(uri: str) -> Any:
    """The writer actor, pinned to the driver's node (a SQLite file lives there)."""
    strategy = NodeAffinitySchedulingStrategy(node_id=ray.get_runtime_context().get_node_id(), soft=False)
    return ray.remote(num_cpus=0)(TrackingWriter).options(scheduling_strategy=strategy).remote(uri)


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

    def flush(self) -> None:
        """Wait until every call sent so far has been applied (actor calls run in order)."""
        ray.get(self.writer.write_failures.remote())
