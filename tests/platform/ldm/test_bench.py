"""``python -m platform.bench ldm`` prints the step throughputs with their FLOPs, MFU and memory."""

from __future__ import annotations

import re

import pytest

from tests.conftest import run_module


@pytest.mark.slow  # a CLI process timing training steps
def test_bench_ldm_prints_throughput_flops_and_says_why_mfu_and_memory_are_unavailable_on_cpu():
    result = run_module("platform.bench", "ldm", "--skip-cache", "--steps", "1", "--repeats", "1",
                        "--device", "cpu", timeout=300)
    assert result.returncode == 0, result.stderr
    ours, bare = map(float, re.search(r"platform\s+([\d.]+) img/s\s+bare loop\s+([\d.]+) img/s", result.stdout).groups())
    assert ours > 0 and bare > 0
    gflops = float(re.search(r"([\d.]+) GFLOP/step \(torch flop counter\)", result.stdout).group(1))
    assert gflops > 0
    assert "MFU unavailable: no known peak for device 'cpu'; pass --peak-tflops" in result.stdout
    assert "peak memory unavailable: torch tracks peak allocations on CUDA devices only" in result.stdout


@pytest.mark.slow  # a CLI process (imports torch and the models)
def test_bench_ldm_refuses_a_non_positive_peak_before_timing():
    result = run_module("platform.bench", "ldm", "--peak-tflops", "0", "--device", "cpu", timeout=120)
    assert result.returncode != 0 and "--peak-tflops must be positive, got 0.0" in result.stderr


@pytest.mark.parametrize("bad", ["0", "-8"])
def test_bench_ldm_refuses_a_non_positive_resolution(bad, capsys):
    from platform.bench.__main__ import main

    with pytest.raises(SystemExit):
        main(["ldm", "--resolution", bad])
    assert f"--resolution: must be a positive number of pixels, got {bad}" in capsys.readouterr().err
