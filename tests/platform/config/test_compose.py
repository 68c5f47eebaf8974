"""Every experiment composes at every scale, and each bad config fails with its key."""

import pytest

from platform.config.compose import compose_config, compose_trials, expand_sweep
from platform.config.schema import Scale
from platform.config.store import experiment_names
from platform.config.validate import ConfigError, latent_shape, validate_config

# The fast suite composes every experiment at the smoke scale its sweeps run; the larger
# scales (six compositions of seven configs each, ~20 s) run with the slow tests.
SCALES = [s.value if s is Scale.smoke else pytest.param(s.value, marks=pytest.mark.slow) for s in Scale]


@pytest.mark.parametrize("scale", SCALES)
@pytest.mark.parametrize("experiment", experiment_names())
def test_every_experiment_composes_at_every_scale(experiment, scale):
    overrides = [f"+experiment={experiment}", f"scale={scale}"]
    if scale == "paper":
        overrides.append("data=imagenet")  # Tab. 13 sizes are for 256x256
    trials = compose_trials(overrides)
    assert len(trials) >= 2
    for cfg in trials:
        validate_config(cfg)
        assert cfg.experiment.name == experiment and cfg.scale.name == scale


def test_downsample_factor_sweeps_all_six_factors():
    trials = compose_trials(["+experiment=downsample_factor", "scale=smoke"])
    assert [cfg.first_stage.f for cfg in trials] == [1, 2, 4, 8, 16, 32]
    assert [latent_shape(cfg) for cfg in trials] == [
        (3, 32, 32), (2, 16, 16), (3, 8, 8), (4, 4, 4), (8, 2, 2), (32, 1, 1)
    ]


def test_paper_scale_carries_tab13():
    trials = compose_trials(["+experiment=downsample_factor", "scale=paper", "data=imagenet"])
    by_f = {cfg.first_stage.f: cfg for cfg in trials}
    assert [latent_shape(by_f[f]) for f in (1, 2, 4, 8, 16, 32)] == [
        (3, 256, 256), (2, 128, 128), (3, 64, 64), (4, 32, 32), (8, 16, 16), (32, 8, 8)
    ]
    assert by_f[4].ldm.unet.channels == 192 and list(by_f[4].ldm.unet.channel_mult) == [1, 2, 3, 5]
    assert by_f[8].ldm.train.batch_size == 64 and by_f[8].ldm.train.lr == pytest.approx(6.4e-5)
    assert list(by_f[32].ldm.unet.attention_resolutions) == [8, 4, 2]
    assert by_f[1].ldm.train.batch_size == 7 and by_f[16].ldm.train.batch_size == 112


def test_command_line_sweep_syntax_adds_an_axis():
    trials = expand_sweep(["+experiment=kl_vs_vq", "scale=smoke", "ldm.train.lr=1e-4,2e-4"])
    assert len(trials) == 8
    assert sum("ldm.train.lr=0.0001" in t or "ldm.train.lr=1e-4" in t for t in trials) == 4


def test_unknown_experiment_lists_the_available_ones():
    with pytest.raises(Exception) as info:
        compose_config(["+experiment=no_such_thing"])
    message = str(info.value)
    assert "experiment/no_such_thing" in message
    for name in experiment_names():
        assert name in message


def test_unknown_scale_lists_the_available_ones():
    with pytest.raises(Exception) as info:
        compose_config(["scale=huge"])
    assert "scale/huge" in str(info.value) and "smoke" in str(info.value)


@pytest.mark.parametrize(
    "override, key, allowed",
    [
        ("first_stage.f=3", "first_stage.f", "1, 2, 4, 8, 16, 32"),
        ("first_stage.f=64", "first_stage.f", "1, 2, 4, 8, 16, 32"),
        ("first_stage.regularizer=gauss", "first_stage.regularizer", "kl, vq, none"),
        ("ldm.train.steps=0", "ldm.train.steps", ">= 1"),
        ("first_stage.train.steps=-1", "first_stage.train.steps", ">= 1"),
        ("ldm.conditioning=klass", "ldm.conditioning", "none, class, text, concat"),
        ("eval.num_samples=0", "eval.num_samples", ">= 1"),
        ("eval.metrics=[fid,bogus]", "eval.metrics", "fid, kid, pr, is"),
        ("eval.sampling_steps=[10,1001]", "eval.sampling_steps", "from 1 to ldm.diffusion.num_steps=1000"),
        ("eval.sampling_steps=[0]", "eval.sampling_steps", "positive integers"),
    ],
)
def test_bad_values_fail_with_key_and_allowed_values(override, key, allowed):
    cfg = compose_config(["scale=smoke", override])
    with pytest.raises(ConfigError) as info:
        validate_config(cfg)
    assert key in str(info.value) and allowed in str(info.value)


def test_the_full_sampling_chain_is_allowed():
    validate_config(compose_config(["scale=smoke", "eval.sampling_steps=[1000]", "eval.sampler=ddpm"]))


def test_type_errors_fail_at_composition_with_the_key():
    with pytest.raises(Exception) as info:
        compose_config(["ldm.train.steps=many"])
    assert "ldm.train.steps" in str(info.value)
