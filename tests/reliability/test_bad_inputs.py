"""Bad inputs fail before work starts (or fail only their trial) with a message that names
the input and what to do; a GPU request on a CPU-only cluster is refused, not queued forever. Data-level cases (undecodable image, manifest hash mismatch,
corrupt headers) are covered where they are detected: tests/platform/data/test_errors.py;
a truncated shard failing only its trial, and credentials in a tracking URL never printed:
tests/platform/orchestration/test_sweep_e2e.py."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time

import pytest

from tests.conftest import REPO_ROOT, run_module

pytestmark = pytest.mark.slow
NOT_STARTED = "Started a local Ray instance"


def _sweep(tmp_path, shards, *extra: str, timeout: float = 300) -> tuple[int, str]:
    train, test = shards
    out = run_module("platform.sweep", "scale=smoke", f"paths.work_dir={tmp_path / 'work'}",
                     f"data.train_shards={train}", f"data.eval_shards={test}", "cluster.num_cpus=2", *extra,
                     timeout=timeout)
    return out.returncode, out.stdout + out.stderr


def test_missing_manifest(tmp_path, tiny_shards):
    empty = tmp_path / "empty"
    empty.mkdir()
    code, text = _sweep(tmp_path, (empty, tiny_shards[1]))
    assert code == 2 and "cannot start the sweep" in text and str(empty) in text and "manifest" in text
    assert NOT_STARTED not in text


def test_unknown_experiment_and_bad_sweep_syntax(tmp_path, tiny_shards):
    code, text = _sweep(tmp_path, tiny_shards, "+experiment=no_such_experiment")
    assert code != 0 and "no_such_experiment" in text and "downsample_factor" in text  # the choices
    code, text = _sweep(tmp_path, tiny_shards, "ldm.train.lr=[1e-4,")
    assert code != 0 and "no viable alternative at input '[1e-4,'" in text and "override_grammar" in text
    assert NOT_STARTED not in text


def test_unwritable_work_dir_is_refused_before_hydra_writes(tmp_path, tiny_shards):
    a_file = tmp_path / "a-file"
    a_file.write_text("")
    train, test = tiny_shards
    out = run_module("platform.sweep", "scale=smoke", f"paths.work_dir={a_file / 'work'}",
                     f"data.train_shards={train}", f"data.eval_shards={test}", timeout=300)
    code, text = out.returncode, out.stdout + out.stderr
    assert code == 2 and f"paths.work_dir={a_file / 'work'} is not a writable directory" in text
    assert "Traceback" not in text and NOT_STARTED not in text


def test_full_disk_during_a_checkpoint_write_leaves_nothing_half_written(tmp_path):
    # A file-size limit makes writes fail with EFBIG, as a full disk fails them with ENOSPC.
    code = f"""
        import json, pathlib, resource, signal
        import torch
        from platform.checkpoint import CheckpointError, latest_checkpoint, save_checkpoint
        root = pathlib.Path({str(tmp_path / 'ckpts')!r})
        save_checkpoint(root, 10, {{"model": {{"w": torch.zeros(10)}}}}, {{}})
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (100_000, resource.RLIM_INFINITY))
        try:
            save_checkpoint(root, 20, {{"model": {{"w": torch.zeros(100_000)}}}}, {{}})
            error = None
        except CheckpointError as raised:
            error = str(raised)
        print(json.dumps({{"error": error, "left": sorted(p.name for p in root.iterdir()),
                           "latest": latest_checkpoint(root).name}}))
    """
    proc = subprocess.run([sys.executable, "-c", f"exec({textwrap.dedent(code)!r})"], cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=120)
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert "could not be written" in result["error"] and "paths.work_dir" in result["error"]
    assert result["left"] == ["step-00000010"] and result["latest"] == "step-00000010"


def test_missing_inception_weights(tmp_path, tiny_shards):
    code, text = _sweep(tmp_path, tiny_shards, f"eval.inception_weights={tmp_path / 'nope.pth'}")
    assert code == 2 and "eval.inception_weights=" in text and "python -m evaluation assets" in text
    assert NOT_STARTED not in text


def test_gpu_request_on_a_cpu_only_cluster_is_refused_not_hung(figures, ray_cluster, tiny_shards, tmp_path, capsys):
    """Ray would queue a task asking for a GPU that no node has forever (a real 2-CPU cluster)."""
    from platform.config.compose import compose_config, expand_sweep
    from platform.orchestration.plan import plan_trials
    from platform.orchestration.runner import run_plans

    train, test = tiny_shards
    overrides = expand_sweep(["scale=smoke", f"paths.work_dir={tmp_path / 'work'}", f"data.train_shards={train}",
                              f"data.eval_shards={test}", "ldm.train.use_gpu=true"])
    started = time.time()
    code = run_plans(plan_trials([compose_config(o) for o in overrides], overrides))
    refused_s = time.time() - started
    err = capsys.readouterr().err
    assert code == 2 and "trial 0: ldm needs 1 GPU but the Ray cluster has 0" in err, err
    assert "ldm.train.num_workers / ldm.train.use_gpu" in err
    assert refused_s < 60  # refused at once, not after a scheduling timeout
    figures(f"infeasible GPU request: refused in {refused_s:.1f} s (cluster already running)")
