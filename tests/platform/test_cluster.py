"""Ray workers import the project's ``platform`` package (DESIGN.md §4)."""

import ray

from platform.cluster import check_workers
from platform.orchestration.progress import RemoteProgressBoard, eta_seconds


def test_task_defined_under_platform_runs_on_a_worker(ray_cluster):
    report = check_workers()
    assert report["platform_package"].endswith("platform/__init__.py")


def test_actor_defined_under_platform_runs_on_a_worker(ray_cluster):
    board = RemoteProgressBoard.remote()
    ray.get(board.update.remote("0/ldm", state="running", step=0, total=10))
    ray.get(board.update.remote("0/ldm", step=5))
    rows = ray.get(board.snapshot.remote())
    assert rows["0/ldm"]["state"] == "running" and rows["0/ldm"]["step"] == 5
    assert eta_seconds(rows["0/ldm"], now=rows["0/ldm"]["since"] + 10.0) == 10.0
