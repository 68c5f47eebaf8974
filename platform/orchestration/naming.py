"""Trial names made of the values a sweep varies: ``f=8 kl lr=1e-4``.

The MLflow run names, the report's labels and the terminal all use these names, so a
trial reads the same everywhere. Only the overrides whose values differ between the
trials of a sweep appear; a one-trial sweep is named by its first stage.
"""

from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

# Short names of common axes; any other key shows its last dotted segment.
_ALIASES = {"eval.guidance_scale": "s", "eval.sampling_steps": "steps", "ldm.train.lr": "lr"}


def _number(text: str) -> str:
    """``0.0001`` -> ``1e-4``; integers and non-numbers unchanged."""
    try:
        value = float(text)
    except ValueError:
        return text
    if not math.isfinite(value) or value == 0 or value.is_integer() and abs(value) < 1e5:
        return text
    if 1e-3 <= abs(value) < 1e5:
        return f"{value:g}"
    mantissa, exponent = f"{value:.3e}".split("e")
    return f"{mantissa.rstrip('0').rstrip('.')}e{int(exponent)}"


def first_stage_label(first_stage: Mapping[str, Any]) -> str:
    """``f=8 kl``; the f = 1 identity is just ``f=1``."""
    regularizer = first_stage.get("regularizer")
    label = f"f={first_stage.get('f')}"
    return label if regularizer in (None, "none") else f"{label} {regularizer}"


def _parse(override: str) -> tuple[str, str]:
    key, _, value = override.partition("=")
    return key.lstrip("+~"), value


def swept_keys(overrides: Sequence[Sequence[str]]) -> list[str]:
    """Override keys whose values differ between trials, in command-line order."""
    parsed = [dict(_parse(o) for o in trial) for trial in overrides]
    ordered = list(dict.fromkeys(key for trial in parsed for key in trial))
    return [k for k in ordered if len({trial.get(k) for trial in parsed}) > 1]


def trial_names(overrides: Sequence[Sequence[str]], cfgs: Sequence[Mapping[str, Any]]) -> list[str]:
    """One distinct name per trial, from the overrides that vary across trials.

    Args:
        overrides: each trial's Hydra overrides (``key=value``), as the sweeper made them.
        cfgs: each trial's resolved config (``first_stage`` names the factor and regulariser).
    Returns:
        Names in trial order, e.g. ``["f=4 kl lr=1e-4", "f=4 kl lr=2e-4", ...]``; a
        ``#<index>`` suffix keeps two trials with equal values apart.
    """
    parsed = [dict(_parse(o) for o in trial) for trial in overrides]
    swept = swept_keys(overrides)
    shorts = [_ALIASES.get(k, k.rsplit(".", 1)[-1]) for k in swept]
    # Two swept keys with the same short name (ldm.train.lr, first_stage.train.lr) keep their full names.
    shorts = [s if shorts.count(s) == 1 else k for k, s in zip(swept, shorts)]
    names = []
    for trial, cfg in zip(parsed, cfgs, strict=True):
        parts = []
        for key, short in zip(swept, shorts):
            if key == "first_stage":
                parts.append(first_stage_label(cfg["first_stage"]))
            elif key in trial:
                parts.append(f"{short}={_number(trial[key])}")
        names.append(" ".join(parts) or first_stage_label(cfg["first_stage"]))
    return [f"{name} #{i}" if names.count(name) > 1 else name for i, name in enumerate(names)]
