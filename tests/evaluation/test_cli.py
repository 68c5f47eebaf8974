"""``python -m evaluation`` end to end on real shards: table, JSON, reference cache hit."""

from __future__ import annotations

import json

import pytest

from tests.conftest import run_module


@pytest.mark.slow  # two CLI processes, each loading Inception (~30 s idle)
def test_cli_table_json_and_cache_hit(tiny_shards, eval_cache, inception_asset, tmp_path):
    train, test = map(str, tiny_shards)
    out = tmp_path / "eval.json"
    args = ("evaluation", "--fake", test, "--real", train, "--n", "4", "--metrics", "fid,pr,is",
            "--cache-dir", str(tmp_path / "refs"), "--batch-size", "4")
    first = run_module(*args, "--json", str(out))
    assert first.returncode == 0, first.stderr
    assert "unavailable: the offline Inception weights have no 1008-way fc layer" in first.stdout
    assert "reference cache: miss" in first.stdout
    report = json.loads(out.read_text())
    assert report["metrics"]["fid"]["n"] == 4 and report["metrics"]["fid"]["n_ref"] == 4
    assert report["metrics"]["is"]["value"] is None and report["metrics"]["precision"]["value"] is not None
    second = run_module(*args)
    assert second.returncode == 0 and "reference cache: hit" in second.stdout
    assert "reference cache hit" in second.stderr  # logged, too


@pytest.mark.slow  # several CLI processes, each importing torch
def test_cli_errors_are_short_and_say_what_to_fix(tmp_path):
    done = run_module("evaluation", "--fake", str(tmp_path / "nope"), "--real", str(tmp_path))
    assert done.returncode == 2 and "neither a shard directory" in done.stderr and "Traceback" not in done.stderr
    done = run_module("evaluation", "--fake", str(tmp_path), "--metrics", "fid,foo")
    assert done.returncode == 2 and "unknown metric" in done.stderr and "Traceback" not in done.stderr
