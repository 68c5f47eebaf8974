"""``run_training`` picks in-process or Ray Train; ``fit_on_ray_train`` gives each worker a rank."""

import json
from pathlib import Path

import pytest

from platform.training.ray_train import run_training


def _record_rank(config):
    from platform.distributed import rank, world_size

    out = Path(config["out"]) / f"rank{rank()}.json"
    out.write_text(json.dumps({"rank": rank(), "world": world_size(), "value": config["value"]}))


def test_one_cpu_worker_runs_in_process(tmp_path):
    run_training(_record_rank, {"out": str(tmp_path), "value": 3}, num_workers=1, use_gpu=False,
                 name="t", storage_path=tmp_path)
    assert json.loads((tmp_path / "rank0.json").read_text()) == {"rank": 0, "world": 1, "value": 3}
    with pytest.raises(ValueError, match="Ray Train"):
        run_training(_record_rank, {}, num_workers=2, use_gpu=False, name="t", storage_path=tmp_path,
                     use_ray=False)


@pytest.mark.slow
def test_two_workers_run_on_ray_train_with_a_process_group(ray_cluster, tmp_path):
    run_training(_record_rank, {"out": str(tmp_path), "value": 7}, num_workers=2, use_gpu=False,
                 name="two", storage_path=tmp_path / "ray")
    got = sorted(json.loads(p.read_text())["rank"] for p in tmp_path.glob("rank*.json"))
    assert got == [0, 1]
    assert json.loads((tmp_path / "rank1.json").read_text())["world"] == 2
