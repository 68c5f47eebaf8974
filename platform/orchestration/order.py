"""The order in which a sweep starts its trials: first numbers early, no longer makespan.

With W trial slots (``SweepRunner.submit``: the p-th trial waits for any p - W + 1 of those
started before it), the W - 1
costliest trials start at once, since the longest one bounds the sweep's wall time
(longest-processing-time first, Graham 1969), and the rest start cheapest first, so
the first complete trial arrives as early as it can (shortest-job first). With one slot
it is shortest-job first alone. Costs are estimates; ties keep the sweep's own order.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

from omegaconf import OmegaConf

from platform.config.schema import Stage
from platform.config.validate import latent_shape


def ldm_work(cfg: Mapping[str, Any], stages: Sequence[str]) -> float:
    """A trial's cost estimate: its LDM's training work, steps × batch × latent elements
    (C·(H/f)·(W/f)), the stage that dominates a trial (pixel space at f = 1 most of all);
    0 when the trial trains no LDM (its LDM is finished, or shared with an earlier trial)."""
    if Stage.ldm.value not in stages:
        return 0.0
    channels, height, width = latent_shape(OmegaConf.create(dict(cfg)))
    train = cfg["ldm"]["train"]
    return float(train["steps"] * train["batch_size"] * channels * height * width)


def submission_order(costs: Sequence[float], window: int) -> list[int]:
    """Positions of ``costs`` in the order to start them with ``window`` slots.

    Example: costs [3072, 512, 192, 64, 32, 32] (f = 1…32), window 2 -> [0, 4, 5, 3, 2, 1].

    Raises:
        ValueError: ``window`` < 1.
    """
    if window < 1:
        raise ValueError(f"window must be >= 1, got {window}")
    costliest = sorted(range(len(costs)), key=lambda i: (-costs[i], i))[:window - 1]
    rest = sorted((i for i in range(len(costs)) if i not in costliest), key=lambda i: (costs[i], i))
    return costliest + rest
