"""Bad inputs fail before work starts (or fail only their trial) with a message that names
the input and what to do. Data-level cases (undecodable image, manifest hash mismatch,
corrupt headers) are covered where they are detected: tests/platform/data/test_errors.py;
a truncated shard failing only its trial, and credentials in a tracking URL never printed:
tests/platform/orchestration/test_sweep_e2e.py."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap

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


def test_unwritable_work_dir_is_refused_before_hydra_writes(tmp_path, tiny_shards):
    a_file = tmp_path / "a-file"
    a_file.write_text("")
    train, test = tiny_shards
    out = run_module("platform.sweep", "scale=smoke", f"paths.work_dir={a_file / 'work'}",
                     f"data.train_shards={train}", f"data.eval_shards={test}", timeout=300)
    code, text = out.returncode, out.stdout + out.stderr
    assert code == 2 and f"paths.work_dir={a_file / 'work'} is not a writable directory" in text
    assert "Traceback" not in text and NOT_STARTED not in text
