"""Compose configs outside ``@hydra.main`` (tests, Ray workers, single-stage entry points)."""

from __future__ import annotations

import copy
import os
import sys
from typing import Callable, Optional, Sequence

from hydra import compose, initialize_config_dir
from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.global_hydra import GlobalHydra
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import DictConfig, OmegaConf

from platform.config.store import CONF_DIR, register_configs


# Composed configs by (overrides, with_hydra, cwd) once ``remember_compositions`` is called;
# None: every call composes.
_remembered: Optional[dict[tuple, DictConfig]] = None


def remember_compositions() -> None:
    """Memoise :func:`compose_config` for the rest of this process; each call still returns
    its own copy.

    For the test suite, which composes the same few hundred configs over and over: Hydra
    reads and merges every config file again on each call (~0.2 s, also inside one
    initialisation). Not for long-lived processes, which would miss edits to ``conf/``.
    """
    global _remembered
    if _remembered is None:
        _remembered = {}


def compose_config(overrides: Sequence[str] = (), *, with_hydra: bool = False) -> DictConfig:
    """The config ``python -m platform.sweep`` would build from ``overrides`` (no sweep)."""
    key = (tuple(overrides), with_hydra, os.getcwd())  # the Hydra config holds the cwd
    if _remembered is not None and key in _remembered:
        return copy.deepcopy(_remembered[key])  # ~0.01 s
    register_configs()
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("config", overrides=list(overrides), return_hydra_config=with_hydra)
    if _remembered is not None:
        _remembered[key] = copy.deepcopy(cfg)  # the caller may change its copy
    return cfg


def expand_sweep(overrides: Sequence[str] = ()) -> list[list[str]]:
    """Per-trial override lists, expanded exactly as Hydra's basic sweeper does.

    The experiment's ``hydra.sweeper.params`` come first, then the command line, so
    ``ldm.train.lr=1e-4,2e-4`` adds an axis to the experiment's own.
    """
    parser = OverridesParser.create()
    fixed = [o.input_line for o in parser.parse_overrides(list(overrides)) if not o.is_sweep_override()]
    cfg = compose_config(fixed, with_hydra=True)
    params = OmegaConf.select(cfg, "hydra.sweeper.params") or {}
    arguments = [f"{key}={value}" for key, value in params.items()] + list(overrides)
    parsed = parser.parse_overrides(arguments)
    return [list(trial) for batch in BasicSweeper.split_arguments(parsed, None) for trial in batch]


def compose_trials(overrides: Sequence[str] = ()) -> list[DictConfig]:
    """The composed config of every trial of the sweep that ``overrides`` describe."""
    return [compose_config(trial) for trial in expand_sweep(overrides)]


def run_command_line(doc: str, run: Callable[[DictConfig, list[str]], int], argv: Optional[Sequence[str]] = None) -> int:
    """A ``python -m`` entry point taking Hydra overrides: ``--help`` prints ``doc``; otherwise
    the config is composed and ``run(cfg, overrides)`` returns the exit code (2: bad overrides)."""
    args = list(sys.argv[1:] if argv is None else argv)
    if any(a in ("-h", "--help") for a in args):
        print(doc)
        return 0
    try:
        cfg = compose_config(args)
    except Exception as error:  # noqa: BLE001 - Hydra's composition errors name the bad override
        print(f"config error: {error}", file=sys.stderr)
        return 2
    return run(cfg, args)
