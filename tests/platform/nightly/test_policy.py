"""Nightly building blocks without a sweep: leases, regression verdicts, budget, filters."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
from omegaconf import OmegaConf

from platform.config.validate import ConfigError
from platform.leases import lease
from platform.nightly.discover import Candidate, parse_since, sweep_overrides
from platform.nightly.job import _Budget
from platform.nightly.regression import compare
from tests.conftest import REPO_ROOT

_HOLD = """
import sys, time
from platform.leases import lease
with lease(sys.argv[1], "ckpt") as held:
    print("held" if held else "busy", flush=True)
    time.sleep(60)
"""


def test_a_killed_holder_leaves_no_stale_lease(tmp_path):
    child = subprocess.Popen([sys.executable, "-c", _HOLD, str(tmp_path)], cwd=REPO_ROOT, stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "held"
        with lease(tmp_path, "ckpt") as held:
            assert not held  # another job has it
        with lease(tmp_path, "other") as held:
            assert held  # leases are per name
    finally:
        os.kill(child.pid, signal.SIGKILL)  # a job killed mid-evaluation
        child.wait()
    with lease(tmp_path, "ckpt") as held:
        assert held


def _scalars(fid: float, half_width: float, n: int = 32) -> dict[str, float]:
    return {"eval/fid": fid, "eval/fid_lo": fid - half_width, "eval/fid_hi": fid + half_width,
            "eval/fid_std": half_width / 1.96, "eval/precision": 0.5, "eval/precision_lo": 0.4,
            "eval/precision_hi": 0.6, "eval/precision_std": 0.05, "eval/n": n, "eval/n_ref": n}


def test_only_a_worse_value_outside_both_intervals_is_a_regression():
    verdicts = lambda new, old: {c.metric: c.verdict for c in compare(new, old, ["fid", "precision"], "previous")}
    assert verdicts(_scalars(60.0, 5.0), _scalars(40.0, 5.0)) == {"fid": "regression", "precision": "within noise"}
    assert verdicts(_scalars(44.0, 5.0), _scalars(40.0, 5.0))["fid"] == "within noise"  # intervals overlap
    assert verdicts(_scalars(20.0, 5.0), _scalars(40.0, 5.0))["fid"] == "improvement"
    assert verdicts(_scalars(60.0, 5.0, n=64), _scalars(40.0, 5.0))["fid"] == "not comparable"  # other N
    no_interval = {"eval/fid": 90.0, "eval/n": 32, "eval/n_ref": 32}
    assert verdicts(no_interval, _scalars(40.0, 5.0))["fid"] == "not comparable"


def test_budget_defers_beyond_max_checkpoints_but_never_a_final_checkpoint():
    nightly = OmegaConf.create({"max_checkpoints": 1, "max_minutes": 0, "always_final": True})
    budget = _Budget(nightly, time.time())
    target = SimpleNamespace()
    mid, final = Candidate(target, Path("a"), 10, False), Candidate(target, Path("b"), 30, True)
    assert budget.gate(mid)() and not budget.gate(mid)()
    assert budget.gate(final)()
    timed = _Budget(OmegaConf.create({"max_checkpoints": 0, "max_minutes": 0.001, "always_final": False}), time.time() - 1)
    assert not timed.gate(final)()


def test_since_and_overrides_are_parsed_or_refused():
    assert parse_since(None) is None
    assert parse_since("2026-11-01") == parse_since("2026-11-01T00:00:00+00:00")
    with pytest.raises(ConfigError, match="nightly.since='last week'"):
        parse_since("last week")
    assert sweep_overrides(["+experiment=x", "scale=smoke", "nightly.policy=all", "eval.seed=1"]) == [
        "scale=smoke", "eval.seed=1"]


def test_evaluate_needs_exactly_one_target(tmp_path, capsys):
    from platform.config.compose import compose_config
    from platform.evaluate import EXIT_SETUP, run_evaluate

    cfg = compose_config(["scale=smoke", f"paths.work_dir={tmp_path}"])
    assert run_evaluate(cfg) == EXIT_SETUP
    assert "set exactly one of evaluate.checkpoint" in capsys.readouterr().err
    cfg = compose_config(["scale=smoke", f"paths.work_dir={tmp_path}", f"evaluate.checkpoint={tmp_path}/nope"])
    assert run_evaluate(cfg) == EXIT_SETUP
    assert "no such checkpoint directory" in capsys.readouterr().err
