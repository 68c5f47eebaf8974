"""``python -m platform.sweep``: compose an experiment with Hydra and run its trials.

    python -m platform.sweep +experiment=downsample_factor sweep.dry_run=true
    python -m platform.sweep +experiment=kl_vs_vq scale=smoke ldm.train.lr=1e-4,2e-4

The primary config ``conf/sweep.yaml`` runs Hydra in MULTIRUN mode, so no ``-m`` is
needed: experiments bring their own sweep axes and comma-separated values on the
command line add axes (Hydra's syntax). The whole sweep reaches ``run_sweep`` at once
through the ``stage_graph`` launcher (``hydra_plugins/ldm_platform``).
"""

from __future__ import annotations

import sys
from typing import Sequence

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from platform.config.validate import ConfigError
from platform.config.store import CONF_DIR, register_configs
from platform.orchestration.plan import format_plan, plan_trials

register_configs()


def run_sweep(cfgs: Sequence[DictConfig], overrides: Sequence[Sequence[str]]) -> int:
    """Validate and run every trial; returns the process exit code (0: all succeeded)."""
    try:
        plans = plan_trials(cfgs, overrides)
    except ConfigError as error:
        print(f"config error: {error}", file=sys.stderr)
        return 2
    print(format_plan(plans), flush=True)
    if plans[0].cfg.sweep.dry_run:
        print("dry run: nothing was started (sweep.dry_run=true)")
        return 0
    from platform.orchestration.runner import run_plans

    return run_plans(plans)


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="sweep")
def main(cfg: DictConfig) -> None:
    """Only reached with ``hydra.mode=RUN``: Hydra then calls this with one trial."""
    exit_code = run_sweep([cfg], [list(HydraConfig.get().overrides.task)])
    if exit_code:
        raise SystemExit(exit_code)


if __name__ == "__main__":
    main()
