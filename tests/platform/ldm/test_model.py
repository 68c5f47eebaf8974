"""Denoiser presets and conditioning: shapes per f, level dropping, τθ for every mode."""

from __future__ import annotations

import pytest
import torch

from platform.config.compose import compose_config
from platform.ldm.conditioning import CondInput
from platform.ldm.model import LdmModel
from platform.ldm.unet import usable_levels


def _model(overrides, *, text_width=None):
    cfg = compose_config(["scale=smoke", *overrides])
    size = cfg.data.resolution // cfg.first_stage.f
    model = LdmModel(cfg.ldm, latent_channels=cfg.first_stage.latent_channels, latent_size=size,
                     num_classes=cfg.data.num_classes, text_width=text_width)
    return cfg, model, size


def test_usable_levels_drop_sub_pixel_levels():
    assert usable_levels(8, [1, 2, 4]) == [1, 2, 4]
    assert usable_levels(2, [1, 2, 4]) == [1, 2]
    assert usable_levels(1, [1, 2, 4]) == [1]  # 32 px at f = 32: one level, no down-sampling
    assert usable_levels(6, [1, 2, 4]) == [1, 2]  # 6 -> 3 -> (odd: stop)


@pytest.mark.parametrize("fs", ["identity", "kl_f2", "kl_f4", "kl_f8", "kl_f16", "kl_f32", "vq_f8"])
def test_latent_shapes_follow_f(fs):
    cfg, model, size = _model([f"first_stage={fs}", "ldm.conditioning=class"])
    c = cfg.first_stage.latent_channels
    assert size == 32 // cfg.first_stage.f
    z = torch.randn(2, c, size, size)
    context = model.context(torch.tensor([0, 3]))
    assert context.shape == (2, 1, cfg.ldm.unet.context_dim)
    out = model.denoise(z, torch.tensor([10, 900]), context)
    assert out.shape == (2, c, size, size)


def test_unconditional_and_concat_models():
    _, model, size = _model(["first_stage=kl_f4", "ldm.conditioning=none"])
    assert model(torch.randn(2, 3, size, size), torch.tensor([1, 2])).shape == (2, 3, size, size)
    cfg, model, size = _model(["first_stage=kl_f4", "ldm.conditioning=concat"])
    assert model.unet.config.in_channels == 3 + 3
    cond_input = CondInput(cfg.ldm, latent_size=size)
    lowres = cond_input.prepare({"image": torch.rand(2, 3, 32, 32) * 2 - 1})
    assert lowres.shape == (2, 3, size, size)  # 32/sr_factor=8 px, resized to the 8 px latent
    out = model(torch.randn(2, 3, size, size), torch.tensor([1, 2]), lowres)
    assert out.shape == (2, 3, size, size)
    dropped = model.context(lowres, torch.tensor([True, False]))
    assert torch.all(dropped[0] == 0) and torch.equal(dropped[1], lowres[1])


def test_class_dropout_uses_the_null_class():
    cfg, model, _ = _model(["first_stage=kl_f8", "ldm.conditioning=class"])
    labels = torch.tensor([1, 2])
    ctx = model.context(labels, torch.tensor([True, False]))
    null = model.conditioner.embedding.weight[cfg.data.num_classes]
    torch.testing.assert_close(ctx[0, 0], null)
    torch.testing.assert_close(ctx[1, 0], model.conditioner.embedding.weight[2])


def test_trainable_bert_text_encoder_runs_offline():
    cfg, model, size = _model(["first_stage=kl_f8", "ldm.conditioning=text", "ldm.cond.text_encoder=bert"])
    model.eval()  # BERT dropout off
    cond_input = CondInput(cfg.ldm, latent_size=size)
    ids = cond_input.prepare({"caption": ["a photo of a shoe", "a shirt"]})
    assert ids.shape == (2, cfg.ldm.cond.max_text_tokens) and ids.dtype == torch.long
    ctx = model.context(ids, torch.tensor([False, True]))
    assert ctx.shape == (2, cfg.ldm.cond.max_text_tokens, cfg.ldm.unet.context_dim)
    null = model.context(model.conditioner.null_input(ids, 1)[:1])
    torch.testing.assert_close(ctx[1], null[0])
    assert any(p.requires_grad for p in model.conditioner.bert.parameters())


def test_frozen_minilm_text_encoder_runs_offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    cfg = compose_config(["scale=smoke", "first_stage=kl_f8", "ldm.conditioning=text"])
    cond_input = CondInput(cfg.ldm, latent_size=4)
    assert cond_input.text_width == 384
    feats = cond_input.prepare({"caption": ["a sneaker", "a bag"]})
    assert feats.shape == (2, cfg.ldm.cond.max_text_tokens, 384)
    assert not any(p.requires_grad for p in cond_input.frozen.parameters())
    model = LdmModel(cfg.ldm, latent_channels=4, latent_size=4, num_classes=10, text_width=384)
    model.conditioner.set_null_text(cond_input.null_caption_features())
    out = model(torch.randn(2, 4, 4, 4), torch.tensor([3, 4]), feats, torch.tensor([True, False]))
    assert out.shape == (2, 4, 4, 4)
    assert "conditioner.null_text" in model.state_dict() and not any("frozen" in k for k in model.state_dict())


@pytest.mark.parametrize("f,widths,attn_sides", [
    (4, (192, 384, 576, 960), [32, 16, 8]),  # LDM-4: 64² latents, mult 1,2,3,5
    (8, (256, 512, 1024), [32, 16, 8]),  # LDM-8: 32² latents
    (32, (256, 512, 1024), [8, 4, 2]),  # LDM-32: 8² latents
])
def test_paper_presets_follow_tab13(f, widths, attn_sides):
    cfg = compose_config(["scale=paper", "data=imagenet", f"first_stage=kl_f{f}"])
    size = cfg.data.resolution // f
    with torch.device("meta"):  # Tab. 13 sizes without allocating their weights
        model = LdmModel(cfg.ldm, latent_channels=cfg.first_stage.latent_channels, latent_size=size,
                         num_classes=1000)
    unet = model.unet.config
    assert tuple(unet.block_out_channels) == widths
    assert unet.cross_attention_dim == 512 and unet.attention_head_dim == 1  # one head, embedding 512
    sides = [size // 2**i for i in range(len(widths))]
    attended = [s for s, kind in zip(sides, unet.down_block_types) if kind.startswith("CrossAttn")]
    assert attended == [s for s in sides if s in attn_sides]
