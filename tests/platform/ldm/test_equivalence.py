"""Plumbing does not change the maths of LDM training: accumulation = full batch, a resumed
run = the uninterrupted run, and ``load_ldm(use_ema=...)`` loads what training averaged."""

from __future__ import annotations

import copy

import pytest
import torch

from platform.checkpoint import list_checkpoints, load_checkpoint
from platform.ldm.diffusion import make_scheduler
from platform.ldm.ema import Ema
from platform.ldm.load import load_ldm
from platform.ldm.train import StepParts, build_model, load_frozen_first_stage, train_ldm, train_step
from platform.reporting import LocalReporter
from tests.platform.ldm.conftest import smoke_config

TINY = ["ldm.unet.channels=16", "ldm.unet.context_dim=32"]


def _parts(cfg, fs_ckpt, seed=3):
    device = torch.device("cpu")
    first_stage = load_frozen_first_stage(fs_ckpt, cfg, device)
    torch.manual_seed(0)
    model, cond_input = build_model(cfg, first_stage, device)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    return StepParts(net=model, model=model, ema=Ema(model, 0.9), opt=opt, scheduler=make_scheduler(cfg.ldm.diffusion),
                     first_stage=first_stage, cond_input=cond_input, scale=float(first_stage.scale_factor),
                     cfg_dropout=0.5, precision="bf16", device=device, seed=seed)


def _step_gradient(parts, micro_batches, step):
    grads = []
    handle = parts.opt.register_step_pre_hook(
        lambda *_: grads.extend(p.grad.clone() for p in parts.model.parameters() if p.grad is not None))
    train_step(parts, micro_batches, step)
    handle.remove()
    return torch.cat([g.flatten() for g in grads])


def _batch(n, generator):
    return {"image": torch.rand(n, 3, 32, 32, generator=generator) * 2 - 1,
            "label": torch.randint(0, 10, (n,), generator=generator)}


def _split(batch, size):
    return [{k: v[i:i + size] for k, v in batch.items()} for i in range(0, len(batch["label"]), size)]


@pytest.mark.parametrize("prediction", ["epsilon", "v_prediction"])
def test_accumulated_gradient_equals_the_full_batch_gradient(tiny_shards, first_stage_f8, tmp_path, prediction):
    cfg = smoke_config(tiny_shards, tmp_path, "ldm.conditioning=class", f"ldm.diffusion.prediction={prediction}",
                       *TINY)
    batch = _batch(8, torch.Generator().manual_seed(0))
    full = _step_gradient(_parts(cfg, first_stage_f8), [batch], step=4)
    accum = _step_gradient(_parts(cfg, first_stage_f8), _split(batch, 2), step=4)
    assert full.abs().max() > 0
    torch.testing.assert_close(accum, full, rtol=0, atol=2e-5 * float(full.abs().max()))
    # ... and the draws are the step's: another step (or seed) gives another gradient.
    other = _step_gradient(_parts(cfg, first_stage_f8), [batch], step=5)
    assert not torch.allclose(other, full, rtol=0, atol=1e-3 * float(full.abs().max()))


def _assert_same_states(a, b, path=""):
    if isinstance(a, torch.Tensor):
        assert torch.equal(a, b), path
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), path
        for k in a:
            _assert_same_states(a[k], b[k], f"{path}.{k}")
    elif isinstance(a, (list, tuple)):
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            _assert_same_states(x, y, f"{path}.{i}")
    else:
        assert a == b, path


@pytest.mark.slow  # ~20 s quiet, about a minute on a contended 2-core box
def test_resumed_run_equals_the_uninterrupted_run_bit_for_bit(tiny_shards, first_stage_f8, tmp_path):
    cfg = smoke_config(tiny_shards, tmp_path, "ldm.conditioning=class", "ldm.train.steps=6",
                       "ldm.train.ckpt_every=2", "ldm.train.batch_size=4", "ldm.sample_every=0", *TINY)

    def run(name, stop_at):
        return train_ldm(cfg, tmp_path / name, LocalReporter(tmp_path / name, quiet=True),
                         first_stage_checkpoint=first_stage_f8, stop_at=stop_at)

    straight = run("straight", 4)
    run("resumed", 2)
    resumed = run("resumed", 4)
    assert straight.step == resumed.step == 4
    assert [p.name for p in list_checkpoints(tmp_path / "resumed" / "checkpoints")][-1] == "step-00000004"
    states_a, meta_a, _ = load_checkpoint(straight.checkpoint)
    states_b, meta_b, _ = load_checkpoint(resumed.checkpoint)
    _assert_same_states(states_a, states_b)  # weights, EMA, AdamW state
    assert meta_a["data_position"] == meta_b["data_position"] == [{"epoch": 0, "batch": 4}]
    assert meta_a["rng"] == meta_b["rng"] and meta_a["loss"] == meta_b["loss"]


def test_load_ldm_returns_the_trained_ema_or_raw_weights(tiny_shards, first_stage_f8, tmp_path):
    """Three real steps, then the checkpoint: EMA weights equal the in-memory EMA, raw weights the model."""
    cfg = smoke_config(tiny_shards, tmp_path, "ldm.conditioning=class", *TINY)
    parts = _parts(cfg, first_stage_f8)
    gen = torch.Generator().manual_seed(1)
    for step in range(3):
        train_step(parts, [_batch(4, gen)], step)
    from platform.checkpoint import save_checkpoint

    meta = {"kind": "ldm", "config": __import__("omegaconf").OmegaConf.to_container(cfg, resolve=True),
            "first_stage": {"checkpoint": str(first_stage_f8), "scale_factor": parts.scale, "f": 8,
                            "latent_channels": parts.model.latent_channels}}
    ckpt = save_checkpoint(tmp_path / "ck", 3, {"model": parts.model.state_dict(), "ema": parts.ema.state_dict(),
                                                "opt": parts.opt.state_dict()}, meta)
    expected_ema = parts.ema.copy_to(copy.deepcopy(parts.model))
    with_ema, _ = load_ldm(ckpt, use_ema=True)
    raw, _ = load_ldm(ckpt, use_ema=False)
    loaded_ema, loaded_raw = dict(with_ema.model.named_parameters()), dict(raw.model.named_parameters())
    trained = dict(parts.model.named_parameters())
    for name, value in expected_ema.named_parameters():
        assert torch.equal(loaded_ema[name], value), name
        assert torch.equal(loaded_raw[name], trained[name])
    differs = [n for n, p in loaded_ema.items() if not torch.equal(p, loaded_raw[n])]
    assert differs  # after 3 steps at decay 0.9 the average is not the model
