"""The order a sweep starts its trials in: the costliest W - 1 first, then cheapest first."""

import pytest

from platform.config.compose import compose_trials
from platform.orchestration.order import ldm_work, submission_order


def test_downsample_factor_starts_ldm1_then_the_cheapest_latent_models():
    trials = [dict(cfg) for cfg in compose_trials(["+experiment=downsample_factor"])]
    costs = [ldm_work(cfg, ["first_stage", "ldm", "eval"]) for cfg in trials]
    # f = 1 trains in pixel space: 3·32·32 elements; f = 32 on 32·1·1.
    assert [c / costs[-1] for c in costs] == [96, 16, 6, 2, 1, 1]
    assert submission_order(costs, 2) == [0, 4, 5, 3, 2, 1]  # LDM-1 at once; f = 16 is the first to finish
    assert submission_order(costs, 1) == [4, 5, 3, 2, 1, 0]  # one slot: shortest first
    assert submission_order(costs, 6) == [0, 1, 2, 3, 4, 5]  # every trial starts at once


def test_ties_and_finished_ldms_keep_the_sweeps_order():
    cfg = dict(compose_trials(["+experiment=downsample_factor", "scale=smoke"])[2])
    assert ldm_work(cfg, ["eval"]) == 0  # its LDM is finished or trained by another trial
    assert submission_order([0, 0, 0, 0], 2) == [0, 1, 2, 3]
    assert submission_order([5, 9, 5, 9], 2) == [1, 0, 2, 3]
    assert submission_order([], 2) == []
    with pytest.raises(ValueError, match="window must be >= 1"):
        submission_order([1], 0)
