"""How well a benchmarked step uses the accelerator: FLOPs per step, MFU and peak memory.

MFU (model FLOPs utilisation, PaLM, Chowdhery et al. 2022, App. B) is achieved FLOP/s over
the device's peak dense bf16 FLOP/s. FLOPs are counted by ``torch.utils.flop_counter``
(matmuls, convolutions and attention, forward and backward; element-wise work is not
counted), so the figure is a lower bound on the work done. Where a figure cannot be
measured it is reported as unavailable, with the reason.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch.utils.flop_counter import FlopCounterMode

# Dense bf16 tensor-core peaks from the vendors' data sheets (SXM parts), TFLOP/s.
_PEAK_BF16_TFLOPS = {"H200": 989.0, "H100": 989.0, "A100": 312.0}


def count_flops(step: Callable[[], object]) -> int:
    """FLOPs of one call of ``step``, as ``torch.utils.flop_counter`` counts them."""
    with FlopCounterMode(display=False) as counter:
        step()
    return int(counter.get_total_flops())


def peak_tflops(device: torch.device, override: float | None) -> tuple[float | None, str]:
    """(peak dense bf16 TFLOP/s, where it came from); (None, reason) when it is unknown.

    ``override`` (``--peak-tflops``) wins; otherwise the CUDA device's name is looked up
    in the data-sheet table above.
    """
    if override is not None:
        if override <= 0:
            raise ValueError(f"--peak-tflops must be positive, got {override}")
        return override, "--peak-tflops"
    if device.type != "cuda":
        return None, f"no known peak for device {device.type!r}; pass --peak-tflops"
    name = torch.cuda.get_device_name(device)
    for key, value in _PEAK_BF16_TFLOPS.items():
        if key in name:
            return value, f"{name} data sheet, dense bf16"
    return None, f"no known peak for {name!r}; pass --peak-tflops"


def utilization_line(flops_per_step: int, steps_per_s: float, device: torch.device,
                     override: float | None) -> str:
    """One printable line: achieved TFLOP/s, and MFU or the reason it is unavailable."""
    achieved = flops_per_step * steps_per_s / 1e12
    peak, source = peak_tflops(device, override)
    mfu = f"MFU {achieved / peak:.1%} of {peak:g} TFLOP/s ({source})" if peak else f"MFU unavailable: {source}"
    return f"{flops_per_step / 1e9:.1f} GFLOP/step (torch flop counter)   {achieved:.2f} TFLOP/s   {mfu}"


def peak_memory_line(device: torch.device, step: Callable[[], object]) -> str:
    """Run ``step`` once and report the peak memory the CUDA caching allocator handed out."""
    if device.type != "cuda":
        return "peak memory unavailable: torch tracks peak allocations on CUDA devices only"
    torch.cuda.synchronize(device)
    torch.cuda.reset_peak_memory_stats(device)
    step()
    torch.cuda.synchronize(device)
    return f"peak memory {torch.cuda.max_memory_allocated(device) / 2**30:.2f} GiB (torch.cuda.max_memory_allocated)"
