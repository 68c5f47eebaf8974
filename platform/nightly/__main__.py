"""``python -m platform.nightly [overrides]``: evaluate what is new, from cron or a scheduler.

    python -m platform.nightly +experiment=downsample_factor
    python -m platform.nightly nightly.experiments=[downsample_factor,kl_vs_vq] nightly.policy=all
    python -m platform.nightly +experiment=downsample_factor nightly.max_checkpoints=4 nightly.since=2026-11-01

Finds the LDM checkpoints of the chosen experiments (finished and still-training runs),
evaluates each complete, not yet evaluated one with the current ``eval`` settings (same
Hydra config groups as platform.sweep; knobs in the ``nightly`` group, conf/nightly/),
logs ``eval/*`` at its step on the runs that own it, compares with the run's previous
evaluation and an optional champion using the metrics' intervals, and records the night
as one MLflow run (kind=nightly) with a summary table. Running it again does nothing new.

Exit codes: 0 nothing wrong; 2 bad config or setup (nothing evaluated); 3 a regression
(tagged nightly.regression on the run, listed in the summary); 4 no regression, but some
checkpoint was skipped (incomplete or corrupt) or failed to evaluate.
"""

from __future__ import annotations

import sys
from typing import Optional, Sequence


def main(argv: Optional[Sequence[str]] = None) -> int:
    from platform.config.compose import run_command_line
    from platform.nightly.job import run_nightly

    return run_command_line(__doc__, run_nightly, argv)


if __name__ == "__main__":
    sys.exit(main())
