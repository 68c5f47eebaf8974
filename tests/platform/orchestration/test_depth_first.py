"""The sweep's depth-first gate: a Ray dependency that waits for a task, failed or not."""

from __future__ import annotations

import time

import pytest
import ray

from platform.orchestration.stage_task import gate


@ray.remote(num_cpus=0)
def _trial(seconds: float, fail: bool = False) -> float:
    time.sleep(seconds)
    if fail:
        raise RuntimeError("trial failed")
    return time.time()


@ray.remote(num_cpus=0)
def _downstream(after=None) -> float:
    return time.time()


def test_gate_starts_work_after_a_task_settles_even_when_it_failed(ray_cluster):
    ray = ray_cluster
    for fail in (False, True):
        first = _trial.remote(1.0, fail)
        started = ray.get(_downstream.remote(after=gate([first])), timeout=120)
        ready, _ = ray.wait([first], timeout=0)
        assert ready  # the gated task ran only once the upstream had finished
        if not fail:
            assert started >= ray.get(first)


def test_a_freed_slot_starts_the_next_trial_whichever_trial_freed_it(ray_cluster):
    """gate(refs, count): the next trial waits for any ``count`` of the running ones, not a
    fixed one (a long LDM-1 must not hold back the slot a short trial frees)."""
    ray = ray_cluster
    long, short = _trial.remote(30.0), _trial.remote(0.5, fail=True)
    started = ray.get(_downstream.remote(after=gate([long, short], 1)), timeout=120)
    ready, _ = ray.wait([long], timeout=0)
    assert not ready  # started while the long trial still ran, after the short one failed
    ray.cancel(long, force=True)
    with pytest.raises(ValueError, match="count must be between 1 and 2"):
        gate([long, short], 3)
    assert started > 0
