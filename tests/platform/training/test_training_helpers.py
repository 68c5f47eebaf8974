"""Shared training helpers: lr scaling, precision, paths, resumable data streams."""

import contextlib
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from platform.training.optim import adam, global_batch, scaled_lr
from platform.training.parallel import maybe_no_sync, unwrap, wrap_ddp
from platform.training.paths import with_absolute_paths
from platform.training.precision import autocast
from platform.training.resume import (
    DataPosition, ResumeConfigError, check_same_semantics, gather_positions, gather_rng_states, my_position,
    restore_my_rng, rng_state, stream_batches,
)


def test_lr_scales_with_the_global_batch_like_compvis():
    # CompVis autoencoders: 4.5e-6 × (accumulate 1 · 1 GPU · batch 12)
    assert scaled_lr(4.5e-6, batch_size=12, grad_accum=1, world_size=1, scale=True) == pytest.approx(5.4e-5)
    assert scaled_lr(1e-4, batch_size=8, grad_accum=2, world_size=4, scale=True) == pytest.approx(6.4e-3)
    assert scaled_lr(1e-4, batch_size=8, grad_accum=2, world_size=4, scale=False) == 1e-4
    assert global_batch(8, grad_accum=2, world_size=4) == 64


def test_adam_uses_gan_betas_and_only_trainable_parameters():
    net = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Linear(2, 2))
    net[0].requires_grad_(False)
    opt = adam(net.parameters(), 1e-3)
    assert opt.param_groups[0]["betas"] == (0.5, 0.9)
    assert len(opt.param_groups[0]["params"]) == 2
    with pytest.raises(ValueError):
        adam(net[0].parameters(), 1e-3)


def test_autocast_is_fp32_on_cpu_and_rejects_unknown_precisions():
    with autocast(torch.device("cpu"), "bf16"):
        assert (torch.ones(2, 2) @ torch.ones(2, 2)).dtype == torch.float32
    with pytest.raises(ValueError, match="precision"):
        autocast(torch.device("cpu"), "fp16")


def test_single_process_needs_no_ddp():
    net = torch.nn.Linear(2, 2)
    wrapped = wrap_ddp(net, torch.device("cpu"))
    assert wrapped is net and unwrap(wrapped) is net
    assert isinstance(maybe_no_sync(wrapped, sync=False), contextlib.nullcontext)  # nothing to skip
    assert gather_positions(DataPosition(1, 5), torch.device("cpu")) == [{"epoch": 1, "batch": 5}]
    assert my_position([{"epoch": 1, "batch": 5}]) == DataPosition(1, 5)
    assert my_position(None) == DataPosition()


def test_stream_resumes_where_it_stopped_and_crosses_epochs():
    data = {0: ["a", "b", "c"], 1: ["d", "e", "f"]}
    calls = []

    def make_epoch(epoch, skip):
        calls.append((epoch, skip))
        return data[epoch][skip:]

    stream = stream_batches(make_epoch)
    seen = [next(stream) for _ in range(4)]
    assert [b for b, _ in seen] == ["a", "b", "c", "d"]
    assert seen[1][1] == DataPosition(0, 2) and seen[3][1] == DataPosition(1, 1)
    resumed = stream_batches(make_epoch, seen[1][1])
    assert [next(resumed)[0] for _ in range(3)] == ["c", "d", "e"]
    assert calls[-2:] == [(0, 2), (1, 0)]  # skipped batches are not re-read
    with pytest.raises(RuntimeError, match="no batch"):
        next(stream_batches(lambda e, s: []))


def test_paths_become_absolute(tmp_path):
    cfg = OmegaConf.create({"paths": {"data_dir": "data", "work_dir": "/abs/runs"},
                            "data": {"train_shards": "${paths.data_dir}/x/train", "eval_shards": "s3://b/test"}})
    out = with_absolute_paths(cfg, tmp_path)
    assert out.paths.data_dir == str(tmp_path / "data") and out.paths.work_dir == "/abs/runs"
    assert out.data.train_shards == str(tmp_path / "data" / "x" / "train")
    assert out.data.eval_shards == "s3://b/test"
    assert Path(with_absolute_paths(cfg).paths.data_dir).is_absolute()


def test_rng_states_round_trip_for_torch_numpy_and_python():
    import random

    import numpy as np

    torch.manual_seed(3), np.random.seed(3), random.seed(3)
    saved = gather_rng_states()
    expected = (torch.rand(3), np.random.rand(3), random.random())
    torch.rand(5), np.random.rand(5), random.random()  # move every stream on
    assert restore_my_rng(saved)
    again = (torch.rand(3), np.random.rand(3), random.random())
    assert torch.equal(again[0], expected[0]) and (again[1] == expected[1]).all() and again[2] == expected[2]
    import json

    assert json.loads(json.dumps(rng_state())) == rng_state()  # stored in the checkpoint's JSON meta
    assert not restore_my_rng(saved * 2)  # written by 2 ranks: this 1-rank run cannot continue them
    assert not restore_my_rng(None)


def test_resume_refuses_a_changed_semantic_config():
    from platform.config.compose import compose_config

    saved = OmegaConf.to_container(compose_config(["scale=smoke"]), resolve=True)

    def launch(*overrides):
        return compose_config(["scale=smoke", *overrides])

    check_same_semantics(saved, launch("ldm.train.log_every=7", "paths.work_dir=/elsewhere"), "ldm", "run",
                         allow_more_steps=True)  # operational changes are fine
    steps = saved["ldm"]["train"]["steps"]
    check_same_semantics(saved, launch(f"ldm.train.steps={steps * 2}"), "ldm", "run", allow_more_steps=True)
    with pytest.raises(ResumeConfigError, match=r"ldm\.train\.lr: .* -> 0\.123.*new run directory"):
        check_same_semantics(saved, launch("ldm.train.lr=0.123"), "ldm", "run", allow_more_steps=True)
    with pytest.raises(ResumeConfigError, match="ldm.train.steps"):
        check_same_semantics(saved, launch(f"ldm.train.steps={steps - 1}"), "ldm", "run", allow_more_steps=True)
    with pytest.raises(ResumeConfigError, match="first_stage.train.steps"):
        check_same_semantics(saved, launch("first_stage.train.steps=99999"), "first_stage", "run",
                             allow_more_steps=False)


def test_non_finite_losses_stop_training_naming_the_step():
    from platform.training.guards import NonFiniteLossError, check_finite

    check_finite("ldm", {"train/loss": torch.tensor(0.5)}, step=3, every=1)
    with pytest.raises(NonFiniteLossError, match=r"ldm training diverged: train/loss=nan at step 3\. .*ldm\.train\.lr"):
        check_finite("ldm", {"train/loss": torch.tensor(float("nan"))}, step=3, every=1)
    with pytest.raises(NonFiniteLossError, match=r"train/d=inf at step 4 \(checked every 2 steps"):
        check_finite("first_stage", {"train/loss": 1.0, "train/d": float("inf")}, step=4, every=2)
    check_finite("ldm", {"train/loss": float("nan")}, step=3, every=2)  # not a checked step
    check_finite("ldm", {"train/loss": float("nan")}, step=4, every=0)  # never checked
