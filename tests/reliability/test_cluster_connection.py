"""Which cluster a sweep joins, and how credentials reach its workers (real Ray clusters)."""

from __future__ import annotations

import uuid

import pytest

from tests.reliability.clusters import private_cluster, run_script

pytestmark = pytest.mark.slow

_CONNECT = """
    import json, os, sys
    import ray
    {init}
    address = ray.get_runtime_context().gcs_address
    ray.shutdown()
    print(json.dumps(address))
"""


def test_no_address_starts_its_own_cluster_even_beside_a_ray_start_cluster():
    with private_cluster() as stray:  # leaves <temp dir>/ray_current_cluster, as `ray start` does
        env = {"RAY_TMPDIR": stray.temp_root}
        env.pop("RAY_ADDRESS", None)
        joined, _ = run_script(_CONNECT.format(init="ray.init()"), env=env)
        assert joined == stray.address  # the trap: plain ray.init() joins the stray cluster
        own, _ = run_script(_CONNECT.format(
            init="from platform.cluster import ray_init; ray_init(num_cpus=1)"), env=env)
        assert own != stray.address


def test_credentials_reach_workers_and_never_reach_ray_logs():
    token, secret = f"tok-{uuid.uuid4().hex}", f"sec-{uuid.uuid4().hex}"
    code = """
        import json, os, pathlib
        import ray
        from platform.cluster import ray_init
        ray_init(num_cpus=1)

        @ray.remote(num_cpus=0)
        def seen():
            return [os.environ.get("MLFLOW_TRACKING_TOKEN"), os.environ.get("AWS_SECRET_ACCESS_KEY")]

        values = ray.get(seen.remote())
        logs = pathlib.Path(ray._private.worker.global_worker.node.get_logs_dir_path())
        ray.shutdown()
        leaked = [str(p) for p in logs.rglob("*") if p.is_file()
                  and (os.environ["MLFLOW_TRACKING_TOKEN"].encode() in p.read_bytes()
                       or os.environ["AWS_SECRET_ACCESS_KEY"].encode() in p.read_bytes())]
        expected = [os.environ["MLFLOW_TRACKING_TOKEN"], os.environ["AWS_SECRET_ACCESS_KEY"]]
        print(json.dumps({"reached": values == expected, "leaked": leaked}))
    """
    result, output = run_script(code, env={"MLFLOW_TRACKING_TOKEN": token, "AWS_SECRET_ACCESS_KEY": secret})
    assert result == {"reached": True, "leaked": []}
    assert token not in output and secret not in output
