"""The sweep's depth-first gate: a Ray dependency that waits for a task, failed or not."""

from __future__ import annotations

import time

from platform.orchestration.stage_task import gate


def test_gate_starts_work_after_a_task_settles_even_when_it_failed(ray_cluster):
    ray = ray_cluster

    @ray.remote(num_cpus=0)
    def upstream(fail: bool) -> float:
        time.sleep(1.0)
        if fail:
            raise RuntimeError("trial failed")
        return time.time()

    @ray.remote(num_cpus=0)
    def downstream(after=None) -> float:
        return time.time()

    for fail in (False, True):
        first = upstream.remote(fail)
        started = ray.get(downstream.remote(after=gate(first)), timeout=120)
        ready, _ = ray.wait([first], timeout=0)
        assert ready  # the gated task ran only once the upstream had finished
        if not fail:
            assert started >= ray.get(first)
