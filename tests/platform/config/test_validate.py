"""Validation matches the schema: ranges, modes, unknown keys, stage order; each names its key."""

import typing

import pytest

from platform.config.compose import compose_config
from platform.config.ranges import POSITIVE_INT_LISTS, RANGES, SIZE_LISTS
from platform.config.semantics import schema_field_types
from platform.config.validate import _MODES, ConfigError, validate_config


def _numeric(tp) -> bool:
    args = [a for a in typing.get_args(tp) if a is not type(None)]
    return tp in (int, float) or (typing.get_origin(tp) is typing.Union and args and args[0] in (int, float))


def test_every_numeric_field_has_a_range_and_every_mode_its_values():
    types = schema_field_types()
    numeric = {name for name, tp in types.items() if _numeric(tp)}
    assert sorted(numeric - set(RANGES) - set(_MODES)) == [], "add these to platform/config/ranges.py"
    assert set(RANGES) <= set(types) and set(POSITIVE_INT_LISTS + SIZE_LISTS) <= set(types)


@pytest.mark.parametrize(
    "override, message",
    [
        ("ldm.train.log_every=0", "ldm.train.log_every=0 must be an integer >= 1"),
        ("first_stage.train.ckpt_every=0", "first_stage.train.ckpt_every=0 must be an integer >= 1"),
        ("ldm.cond.cfg_dropout=1.0", "ldm.cond.cfg_dropout=1.0 must be a number >= 0 and < 1"),
        ("ldm.train.lr=0", "ldm.train.lr=0.0 must be a number > 0"),
        ("eval.eta=-0.5", "eval.eta=-0.5 must be a number >= 0 and <= 1"),
        ("data.loader_workers=-1", "data.loader_workers=-1 must be an integer >= 0"),
        ("ldm.diffusion.beta_end=0.001", "ldm.diffusion.beta_end=0.001 must exceed ldm.diffusion.beta_start"),
        ("ldm.unet.channel_mult=[1,0]", "ldm.unet.channel_mult=[1, 0] must be a non-empty list of positive"),
        ("eval.reference_split=trian", "eval.reference_split='trian' is not one of: train, eval"),
        ("ldm.diffusion.beta_schedule=cosine", "ldm.diffusion.beta_schedule='cosine' is not one of: linear"),
        ("ldm.train.precision=fp16", "ldm.train.precision='fp16' is not one of: bf16, fp32"),
        ("+ldm.train.warmup_steps=1000", "ldm.train.warmup_steps: not a setting of this platform"),
        ("+foo=1", "foo: not a setting of this platform"),
        ("sweep.stages=[eval,ldm,first_stage]", "must list stages once each, in pipeline order"),
        ("sweep.stages=[first_stage,first_stage]", "must list stages once each"),
        ("sweep.stages=[ldm,eval]", "ldm needs first_stage"),
        ("sweep.stages=[first_stage,eval]", "eval needs ldm"),
        ("sweep.rerun=[ldm,xyz]", "sweep.rerun has ['xyz']"),
    ],
)
def test_config_holes_fail_at_validation_naming_the_key(override, message):
    cfg = compose_config(["scale=smoke", override])
    with pytest.raises(ConfigError) as info:
        validate_config(cfg)
    assert message in str(info.value)


def test_valid_edges_pass():
    for extra in (["sweep.stages=[first_stage,ldm]"], ["sweep.rerun=[eval,3fa2c1]"], ["ldm.sample_every=0"],
                  ["eval.reference_split=eval", "ldm.diffusion.beta_schedule=linear"]):
        validate_config(compose_config(["scale=smoke", *extra]))
