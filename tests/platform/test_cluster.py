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


# -- which cluster, which store: refused before anything starts ---------------------------

import pytest  # noqa: E402

from platform.cluster import check_cluster_store, credential_env  # noqa: E402
from platform.config.compose import compose_config  # noqa: E402
from platform.config.validate import ConfigError, validate_config  # noqa: E402


@pytest.mark.parametrize("overrides, message", [
    (["cluster=remote"], "cluster=remote needs cluster.address"),
    (["cluster.address=10.0.0.1:6379"], "local tracking store"),
    (["cluster.address=ray://head:10001", "tracking.uri=sqlite:////tmp/x.db"], "local tracking store"),
    (["cluster.address=ray://head:10001", "tracking=server", "cluster.num_cpus=2"], "cluster.num_cpus=2"),
])
def test_bad_cluster_settings_are_refused_by_validation(overrides, message):
    with pytest.raises(ConfigError, match=message):
        validate_config(compose_config(["scale=smoke", *overrides]))


def test_remote_cluster_with_a_tracking_server_is_accepted():
    validate_config(compose_config(["scale=smoke", "cluster=remote", "cluster.address=ray://head:10001",
                                    "tracking=server", "tracking.uri=http://mlflow.internal:5000"]))


def test_ray_client_address_from_environment_with_a_file_store_is_refused():
    with pytest.raises(ValueError, match="RAY_ADDRESS=ray://head:10001"):
        check_cluster_store("ray://head:10001", None)
    check_cluster_store("10.0.0.1:6379", None)  # a driver on a cluster node shares the writer's node
    check_cluster_store("ray://head:10001", "https://mlflow.internal")


def test_credential_env_picks_tracking_and_cloud_credentials_only():
    env = {"MLFLOW_TRACKING_TOKEN": "t", "AWS_SECRET_ACCESS_KEY": "s", "GOOGLE_APPLICATION_CREDENTIALS": "/k.json",
           "HOME": "/root", "MLFLOW_TRACKING_URI": "http://x", "AWS_PROFILE": ""}
    assert credential_env(env) == {"MLFLOW_TRACKING_TOKEN": "t", "AWS_SECRET_ACCESS_KEY": "s",
                                   "GOOGLE_APPLICATION_CREDENTIALS": "/k.json"}
