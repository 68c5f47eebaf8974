"""``python -m platform.sweep`` as a user runs it: dry run, errors, --help, --cfg."""

import pytest

from tests.conftest import run_module


@pytest.mark.slow  # a CLI process composing six trials and their latent shapes
def test_dry_run_lists_six_trials_with_latent_shapes():
    out = run_module("platform.sweep", "+experiment=downsample_factor", "sweep.dry_run=true")
    assert out.returncode == 0, out.stderr
    assert "6 trials" in out.stdout
    for f, latent in [(1, "32x32x3"), (2, "16x16x2"), (4, "8x8x3"), (8, "4x4x4"), (16, "2x2x8"), (32, "1x1x32")]:
        assert any(line.split()[1:2] == [str(f)] and latent in line for line in out.stdout.splitlines())
    assert "dry run: nothing was started" in out.stdout
    assert "Started a local Ray instance" not in out.stdout + out.stderr  # Ray never started


@pytest.mark.parametrize(
    "override, expected",
    [
        ("first_stage.f=3", "first_stage.f=3 must be a power of two up to 32"),
        ("ldm.train.log_every=0", "ldm.train.log_every=0 must be an integer >= 1"),
    ],
)
def test_bad_config_fails_before_any_work(override, expected):
    out = run_module("platform.sweep", override)  # no dry run: would start Ray if valid
    assert out.returncode == 2
    assert expected in out.stderr and "Traceback" not in out.stderr
    assert "Ray" not in out.stdout + out.stderr


def test_unknown_experiment_fails_with_the_list():
    out = run_module("platform.sweep", "+experiment=nope")
    assert out.returncode != 0
    assert "experiment/nope" in out.stderr and "downsample_factor" in out.stderr


@pytest.mark.slow  # two CLI processes
def test_help_and_cfg_job_behave_as_in_hydra():
    out = run_module("platform.sweep", "--help")
    assert out.returncode == 0 and "+experiment=NAME" in out.stdout
    assert "experiment: downsample_factor, kl_vs_vq, sampler_steps" in out.stdout
    out = run_module("platform.sweep", "first_stage=kl_f8", "--cfg", "job")
    assert out.returncode == 0 and "name: kl_f8" in out.stdout


@pytest.mark.slow  # two CLI processes
def test_hydra_interpolations_resolve_in_trials_and_batches_are_refused():
    out = run_module("platform.sweep", "scale=smoke", "experiment.description=${hydra:job.num} ${hydra:runtime.cwd}",
                     "seed=1,2", "sweep.dry_run=true")
    assert out.returncode == 0, out.stderr
    assert "2 trials" in out.stdout
    out = run_module("platform.sweep", "scale=smoke", "seed=1,2,3", "hydra.sweeper.max_batch_size=2")
    assert out.returncode == 2
    assert "hydra.sweeper.max_batch_size=2 would split this sweep" in out.stderr
    assert "Ray" not in out.stdout + out.stderr
