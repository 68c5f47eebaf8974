"""How a failed stage task is described in the sweep's summary (no Ray cluster needed)."""

from __future__ import annotations

import ray

from platform.orchestration.stage_task import describe_failure

# What Ray 2.60's raylet reports when its memory monitor kills a task's worker.
RAY_OOM = (
    "Task was killed due to the node running low on memory.\n"
    "1 worker(s) were killed due to the node running low on memory. Memory on the node (IP: 10.0.0.7, "
    "ID: 5f2c) was 7.31GB used / 7.68GB limit (0.951738)\n"
    "(Worker with lease granted: job ID=01000000, lease ID=00ab, task name=ldm:3e1f09aa, required "
    "resources={CPU: 1},    pid=48211, actual memory used=5.20GB, worker ID=7c1d)\n"
    "Refer to the documentation on how to address the out of memory issue: https://docs.ray.io/...")
# Before Ray 2.56 the same report read like this.
RAY_OOM_OLD = (
    "Task was killed due to the node running low on memory.\nMemory on the node (IP: 10.0.0.7, ID: 5f2c) "
    "where the task (task ID: 16310a, name=eval:aa01, pid=48211, memory used=0.93GB) was running was "
    "7.31GB / 7.68GB (0.951738), which exceeds the memory usage threshold of 0.95.")


def test_a_memory_kill_names_the_stage_the_memory_it_used_and_what_to_lower():
    message = describe_failure(ray.exceptions.OutOfMemoryError(RAY_OOM), "ldm")
    assert message.startswith("OutOfMemoryError: the ldm task was killed by Ray's memory monitor")
    assert "after using 5.20GB" in message and "7.31GB used / 7.68GB limit" in message
    assert "lower ldm.train.batch_size" in message and "\n" not in message

    old = describe_failure(ray.exceptions.OutOfMemoryError(RAY_OOM_OLD), "eval")
    assert "the eval task" in old and "after using 0.93GB" in old and "7.31GB / 7.68GB" in old
    assert "lower eval.batch_size" in old


def test_a_stage_exception_is_its_last_line():
    assert describe_failure(ValueError("loss is nan\nat step 12"), "ldm") == "ValueError: at step 12"
