"""``python -m platform.train``: validates, dispatches by stage, and says what is missing."""

from platform.config.compose import compose_config
from platform.train import run_stage


def _cfg(tiny_shards, tmp_path, *extra):
    train, test = tiny_shards
    return compose_config(["scale=smoke", f"data.train_shards={train}", f"data.eval_shards={test}",
                           f"paths.work_dir={tmp_path}", *extra])


def test_unknown_or_untrainable_stage_is_a_config_error(tiny_shards, tmp_path, capsys):
    assert run_stage(_cfg(tiny_shards, tmp_path, "stage=eval")) == 2
    assert "stage=first_stage or stage=ldm" in capsys.readouterr().err
    assert run_stage(_cfg(tiny_shards, tmp_path, "stage=first_stage", "first_stage.f=3")) == 2


def test_identity_needs_no_first_stage_training(tiny_shards, tmp_path, capsys):
    assert run_stage(_cfg(tiny_shards, tmp_path, "stage=first_stage", "first_stage=identity")) == 0
    assert "nothing to do" in capsys.readouterr().out
    assert not (tmp_path / "stages").exists()


def test_ldm_stage_asks_for_its_first_stage_first(tiny_shards, tmp_path, capsys):
    assert run_stage(_cfg(tiny_shards, tmp_path, "stage=ldm", "first_stage=kl_f8")) == 2
    assert "stage=first_stage with the same overrides" in capsys.readouterr().err


def test_help_describes_platform_train_not_the_sweep():
    from tests.conftest import run_module

    out = run_module("platform.train", "--help", timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("platform.train: train one stage")
    assert "python -m platform.train stage=first_stage" in out.stdout and "platform.sweep:" not in out.stdout
