"""``python -m platform.bench data`` prints three throughputs and the two ratios."""

from __future__ import annotations

import re

import pytest

from tests.conftest import run_module


@pytest.mark.slow  # a CLI process timing three data paths
def test_bench_data_prints_three_throughputs_and_two_ratios(tiny_shards):
    train_dir, _ = tiny_shards
    result = run_module("platform.bench", "data", "--shards", str(train_dir), "--batch-size", "32",
                        "--repeats", "1", timeout=300)
    assert result.returncode == 0, result.stderr
    rates = re.findall(r"^\s+(platform loader|raw webdataset \.decode\(\)|PNG files with PIL)\s+(\d+) images/s$",
                       result.stdout, flags=re.M)
    assert [name for name, _ in rates] == ["platform loader", "raw webdataset .decode()", "PNG files with PIL"]
    assert all(int(value) > 0 for _, value in rates)
    ratios = re.findall(r"ratio platform / (webdataset|PIL files)\s+([\d.]+)x", result.stdout)
    assert [name for name, _ in ratios] == ["webdataset", "PIL files"] and all(float(v) > 0 for _, v in ratios)
    assert "256 images (digits), 32x32, batch 32" in result.stdout
