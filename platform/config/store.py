"""Register the schema and the experiments in Hydra's ConfigStore.

Hydra group names are folder names, so ``experiments/`` cannot be searched as group
``experiment``; each ``experiments/*.yaml`` is stored under that group instead, with
the package its ``# @package`` header names. ``+experiment=NAME`` then works, and an
unknown NAME fails with Hydra's list of the available ones.
"""

from __future__ import annotations

import re
from pathlib import Path

from hydra.core.config_store import ConfigStore
from omegaconf import OmegaConf

from platform.config.schema import Config

REPO_ROOT = Path(__file__).resolve().parents[2]
CONF_DIR = REPO_ROOT / "conf"
EXPERIMENTS_DIR = REPO_ROOT / "experiments"

_PACKAGE_HEADER = re.compile(r"^#\s*@package\s+(\S+)", re.MULTILINE)


def experiment_names() -> list[str]:
    """Names accepted by ``+experiment=NAME``."""
    return sorted(path.stem for path in EXPERIMENTS_DIR.glob("*.yaml"))


def register_configs() -> None:
    """Store the root schema and every experiment, register resolvers; idempotent."""
    # Interpolated keys must be strings: ``${ldm.tab13.${str:${first_stage.f}}}``.
    if not OmegaConf.has_resolver("str"):
        OmegaConf.register_new_resolver("str", str)
    store = ConfigStore.instance()
    store.store(name="config_schema", node=Config)
    for path in sorted(EXPERIMENTS_DIR.glob("*.yaml")):
        text = path.read_text()
        header = _PACKAGE_HEADER.search(text)
        store.store(
            group="experiment",
            name=path.stem,
            node=OmegaConf.create(text),
            package=header.group(1) if header else "experiment",
        )
