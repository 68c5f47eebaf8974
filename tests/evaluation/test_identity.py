"""An evaluation identity changes exactly with what changes the evaluation's numbers."""

from platform.config.compose import compose_config
from evaluation.identity import IDENTITY_LENGTH, eval_settings, evaluation_identity, identity_tag


def _identity(cfg=None, steps=10, **changes):
    cfg = cfg if cfg is not None else compose_config(["scale=smoke"])
    args = dict(checkpoint_id="c" * 64, eval_settings=eval_settings(cfg, steps), detector_sha256="d" * 64,
                reference_id="ref-n32-x", num_samples=32, num_ref=32, seeds=[0])
    args.update(changes)
    return evaluation_identity(**args)


def test_identity_is_stable_hex_and_sensitive_to_each_input():
    base = _identity()
    assert base == _identity() and len(base) == IDENTITY_LENGTH and int(base, 16) >= 0
    others = [_identity(checkpoint_id="e" * 64), _identity(detector_sha256="f" * 64), _identity(reference_id="r2"),
              _identity(num_samples=64), _identity(num_ref=64), _identity(seeds=[0, 1]), _identity(steps=20),
              _identity(compose_config(["scale=smoke", "eval.guidance_scale=2.0"]))]
    assert len({base, *others}) == len(others) + 1


def test_operational_eval_settings_and_other_steps_do_not_change_it():
    sweep = compose_config(["scale=smoke", "eval.sampling_steps=[10,50]", "eval.num_workers=4",
                            "eval.batch_size=8", "eval.checkpoints=last"])
    assert _identity(sweep, steps=10) == _identity(steps=10)
    assert eval_settings(sweep, 50)["eval"]["sampling_steps"] == [50]


def test_tag_name():
    assert identity_tag("abc") == "eval_identity.abc"
