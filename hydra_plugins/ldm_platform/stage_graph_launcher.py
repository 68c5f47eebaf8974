"""Hydra launcher that hands a whole sweep to the platform's stage graph.

Hydra accepts plugins only from the ``hydra_plugins`` namespace, so this thin class
lives here and the work lives in ``platform.sweep``. Hydra's basic launcher runs jobs
one at a time and never sees the sweep whole; this one composes every trial first, so
a stage shared by several trials (one first stage for many LDMs) runs once.
Imported during Hydra's plugin scan, outside ``sys.modules``: keep heavy imports inside
``launch``, and no ``from __future__ import annotations`` (dataclasses would then look
the module up in ``sys.modules``).
"""

import copy
import os
import sys
from dataclasses import dataclass
from typing import Optional, Sequence

from hydra.core.config_store import ConfigStore
from hydra.core.hydra_config import HydraConfig
from hydra.core.utils import JobReturn, JobStatus
from hydra.plugins.launcher import Launcher
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf, open_dict, read_write


@dataclass
class StageGraphLauncherConf:
    _target_: str = "hydra_plugins.ldm_platform.stage_graph_launcher.StageGraphLauncher"


ConfigStore.instance().store(
    group="hydra/launcher", name="stage_graph", node=StageGraphLauncherConf, provider="ldm_platform"
)


class StageGraphLauncher(Launcher):
    def __init__(self) -> None:
        self.config: Optional[DictConfig] = None
        self.hydra_context: Optional[HydraContext] = None

    def setup(
        self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig
    ) -> None:
        self.config = config
        self.hydra_context = hydra_context

    def launch(
        self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int
    ) -> Sequence[JobReturn]:
        from platform.sweep import run_sweep

        assert self.config is not None and self.hydra_context is not None
        batch = self.config.hydra.sweeper.get("max_batch_size")
        if batch:
            # Hydra would call launch() once per batch: several sweeps, each from trial 0.
            print(f"config error: hydra.sweeper.max_batch_size={batch} would split this sweep into separate "
                  "sweeps; the stage graph runs a sweep whole (limit concurrency with "
                  "sweep.max_concurrent_trials instead)", file=sys.stderr)
            raise SystemExit(2)
        loader = self.hydra_context.config_loader
        cfgs = [_task_config(loader.load_sweep_config(self.config, list(o)), initial_job_idx + i)
                for i, o in enumerate(job_overrides)]
        exit_code = run_sweep(cfgs, [list(o) for o in job_overrides])
        if exit_code:
            raise SystemExit(exit_code)
        return [
            JobReturn(overrides=list(o), cfg=cfg, status=JobStatus.COMPLETED, _return_value=None)
            for o, cfg in zip(job_overrides, cfgs)
        ]


def _task_config(config: DictConfig, job_num: int) -> DictConfig:
    """The trial's config without the ``hydra`` node, as a task function would get it, with
    ``${hydra:...}`` interpolations resolved against this trial's Hydra config (they cannot
    be resolved later, on a worker, where no Hydra config exists)."""
    with read_write(config), open_dict(config):
        config.hydra.job.num = job_num
        config.hydra.job.id = str(job_num)
        config.hydra.runtime.cwd = os.getcwd()
    HydraConfig.instance().set_config(config)
    task_cfg = copy.deepcopy(config)
    with read_write(task_cfg), open_dict(task_cfg):
        del task_cfg["hydra"]
        for key, value in _hydra_interpolations(task_cfg):
            OmegaConf.update(task_cfg, key, value, merge=False)
    return task_cfg


def _hydra_interpolations(cfg: DictConfig, prefix: str = "") -> list:
    """``(dotted key, resolved value)`` of every value that interpolates ``${hydra:...}``."""
    found = []
    for key in cfg.keys():
        dotted = f"{prefix}{key}"
        if OmegaConf.is_interpolation(cfg, key) and "${hydra:" in str(cfg._get_node(key)._value()):
            found.append((dotted, cfg[key]))
        elif isinstance(cfg._get_node(key), DictConfig):
            found.extend(_hydra_interpolations(cfg[key], f"{dotted}."))
    return found
