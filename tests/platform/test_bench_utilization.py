"""FLOPs, MFU and peak memory as the benchmarks report them (``platform/bench/utilization.py``)."""

from __future__ import annotations

import pytest
import torch

from platform.bench.utilization import count_flops, peak_memory_line, peak_tflops, utilization_line


def test_a_matmul_counts_two_flops_per_multiply_add_forward_and_backward():
    layer = torch.nn.Linear(64, 32, bias=False)
    x = torch.randn(8, 64)
    assert count_flops(lambda: layer(x)) == 2 * 8 * 64 * 32
    # backward: the weight gradient only (x needs none), the same size again
    assert count_flops(lambda: layer(x).sum().backward()) == 2 * (2 * 8 * 64 * 32)


def test_mfu_is_achieved_over_peak_and_unknown_peaks_are_reported_not_guessed():
    line = utilization_line(flops_per_step=4 * 10**12, steps_per_s=0.5, device=torch.device("cpu"), override=10.0)
    assert "4000.0 GFLOP/step" in line and "2.00 TFLOP/s" in line and "MFU 20.0% of 10 TFLOP/s (--peak-tflops)" in line
    line = utilization_line(4 * 10**12, 0.5, torch.device("cpu"), None)
    assert line.endswith("MFU unavailable: no known peak for device 'cpu'; pass --peak-tflops")
    assert peak_memory_line(torch.device("cpu"), lambda: None).startswith("peak memory unavailable")


@pytest.mark.parametrize("bad", [0.0, -5.0])
def test_a_non_positive_peak_is_refused(bad):
    with pytest.raises(ValueError, match="--peak-tflops must be positive"):
        peak_tflops(torch.device("cpu"), bad)
