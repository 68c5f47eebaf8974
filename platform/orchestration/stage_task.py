"""One stage of one trial, executed on a Ray worker.

Runs under the stage's lock: if another sweep finished the same key meanwhile, its
record is returned (cached); otherwise the stage function runs, its output is copied
to ``stage.log``, and the record is written atomically at the end. Unfinished work
stays in the stage directory, where the stage's own resume picks it up next time.
"""

from __future__ import annotations

import contextlib
import io
import re
import sys
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Optional, Sequence, TextIO

import ray
from omegaconf import OmegaConf

from platform.orchestration.records import build_record, read_record, stage_lock, write_record
from platform.orchestration.stage_functions import STAGE_FUNCTIONS, StageFunction
from platform.orchestration.writer import ActorSink
from platform.tracking import MlflowReporter

LOG_FILE = "stage.log"


@dataclass(frozen=True)
class StageSpec:
    """Everything a worker needs to run one stage (plain data, cheap to ship)."""

    stage: str
    key: str
    cfg: dict[str, Any]  # the resolved config of the first trial that needs this stage
    directory: str  # absolute
    run_id: str  # its MLflow run
    devices: float  # CPU workers or GPUs it occupies, for device-hours
    commit: str = "unknown"  # the driver's checkout (workers run from a copy without .git)
    payload: Optional[dict[str, Any]] = None  # what the key hashes (keys.stage_payloads)
    fingerprint: Optional[dict[str, Any]] = None  # the code fingerprint in the payload
    function: Optional[StageFunction] = None  # None: STAGE_FUNCTIONS[stage] (tests pass stubs)


@dataclass
class BoardProgress:
    """Forwards a stage's ``progress(step, total)`` to the sweep's progress board."""

    board: Any
    key: str

    def __call__(self, step: int, total: int) -> None:
        self.board.update.remote(self.key, state="running", step=step, total=total)


class _Tee(io.TextIOBase):
    def __init__(self, *streams: TextIO) -> None:
        self.streams = streams

    def write(self, text: str) -> int:
        for stream in self.streams:
            stream.write(text)
            stream.flush()
        return len(text)


@contextlib.contextmanager
def _capture(path: Path) -> Iterator[None]:
    with open(path, "a") as log, contextlib.redirect_stdout(_Tee(sys.stdout, log)), \
            contextlib.redirect_stderr(_Tee(sys.stderr, log)):
        yield


def execute_stage(spec: StageSpec, writer: Any, board: Any, *upstream: dict[str, Any], after: Any = None) -> dict[str, Any]:
    """Run ``spec`` (or return its finished record); ``upstream`` are the records it consumes.

    ``after`` is a scheduling gate (see :func:`gate`): Ray starts the task once it resolves.
    """
    directory = Path(spec.directory)
    sink = ActorSink(writer)
    progress_key = f"{spec.stage}:{spec.key}"
    with stage_lock(directory):
        record = read_record(directory)
        if record is not None:
            if record["run_id"] != spec.run_id:
                # Another sweep finished this stage while ours waited for the lock: the run
                # this sweep opened for it stays empty; end it, pointing at the one with the history.
                sink.set_tags(spec.run_id, {"computed_by_run": record["run_id"]})
                sink.end_run(spec.run_id, "FINISHED")
                sink.flush()
            board.update.remote(progress_key, state="cached")
            return record
        board.update.remote(progress_key, state="running", step=0)
        reporter = MlflowReporter(sink, spec.run_id, on_progress=BoardProgress(board, progress_key))
        cfg = OmegaConf.create(spec.cfg)
        started = time.time()
        try:
            with _capture(directory / LOG_FILE):
                # Which node ran this attempt: a retried stage appends a line per attempt.
                print(f"== {spec.stage} {spec.key} started {time.strftime('%Y-%m-%d %H:%M:%S')} "
                      f"on Ray node {_node_id()}")
                result = (spec.function or STAGE_FUNCTIONS[spec.stage])(cfg, directory, reporter, list(upstream))
        except BaseException as error:
            with open(directory / LOG_FILE, "a") as log:
                traceback.print_exc(file=log)
            sink.end_run(spec.run_id, "FAILED")
            sink.flush()
            board.update.remote(progress_key, state="failed", message=f"{type(error).__name__}: {error}")
            raise
        record = build_record(directory, stage=spec.stage, key=spec.key, run_id=spec.run_id, result=result,
                              started=started, devices=spec.devices, upstream=list(upstream), commit=spec.commit,
                              payload=spec.payload, fingerprint=spec.fingerprint)
        write_record(directory, record)
        record = read_record(directory)  # as every later reader sees it (paths resolved)
        sink.end_run(spec.run_id, "FINISHED")
        sink.flush()
        board.update.remote(progress_key, state="done")
        return record


def _node_id() -> str:
    return ray.get_runtime_context().get_node_id() if ray.is_initialized() else "(no Ray)"


remote_execute_stage = ray.remote(execute_stage)


@ray.remote(num_cpus=0)
def _settled(refs: list, count: int) -> None:
    ray.wait(refs, num_returns=count)  # done or failed: a failed trial must not block others


def gate(refs: Sequence[Any], count: Optional[int] = None) -> Any:
    """A ref that resolves (to None) once ``count`` (default: all) of ``refs``' tasks have
    finished, successfully or not.

    ``refs`` travel inside a list so Ray does not resolve them (and re-raise an error) here.

    Raises:
        ValueError: ``count`` is not between 1 and ``len(refs)``.
    """
    count = len(refs) if count is None else count
    if not 1 <= count <= len(refs):
        raise ValueError(f"count must be between 1 and {len(refs)}, got {count}")
    return _settled.remote(list(refs), count)


def describe_failure(error: BaseException, stage: str = "") -> str:
    """One line from a (possibly Ray-wrapped) stage exception; a memory kill names the stage,
    the memory its process used and what the node had."""
    if isinstance(error, ray.exceptions.OutOfMemoryError):
        text = " ".join(str(error).split())
        # Ray's raylet: "(... pid=N, actual memory used=5.20GB, ...)" for the killed worker and
        # "Memory on the node (IP: .., ID: ..) was 7.31GB used / 7.68GB limit (0.95)"; older
        # versions: "... memory used=0.93GB) was running was 7.31GB / 7.68GB (0.95)".
        used = re.search(r"memory used=\s*([\d.]+\s*[KMGT]?B)", text)
        node = re.search(r"was (?:running was )?([\d.]+\s*GB(?: used)? / [\d.]+\s*GB(?: limit)?)", text)
        name = stage or "stage"
        knob = "eval.batch_size" if stage == "eval" else f"{stage}.train.batch_size" if stage else "its batch size"
        return (f"OutOfMemoryError: the {name} task was killed by Ray's memory monitor after using "
                f"{used.group(1) if used else 'an unknown amount of memory'}"
                f"{f' (node memory {node.group(1)})' if node else ''}; lower {knob} or give its node more memory")
    cause: Optional[BaseException] = getattr(error, "cause", None) or error
    text = str(cause).strip().splitlines()
    return f"{type(cause).__name__}: {text[-1] if text else ''}"[:300]
