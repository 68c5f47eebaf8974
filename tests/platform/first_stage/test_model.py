"""Every first-stage preset builds, and its latents have the shape Tab. 8 gives."""

import pytest
import torch

from platform.config.compose import compose_config
from platform.first_stage.discriminator import PatchDiscriminator
from platform.first_stage.model import build_first_stage

PRESETS = ["identity"] + [f"{reg}_f{f}" for reg in ("kl", "vq") for f in (2, 4, 8, 16, 32)]
# Tab. 8 / Tab. 13 latent channels c per preset.
CHANNELS = {"identity": 3, "kl_f2": 2, "kl_f4": 3, "kl_f8": 4, "kl_f16": 8, "kl_f32": 32,
            "vq_f2": 2, "vq_f4": 3, "vq_f8": 4, "vq_f16": 8, "vq_f32": 32}


@pytest.mark.parametrize("preset", PRESETS)
def test_preset_encodes_to_32_over_f_and_decodes_back(preset):
    cfg = compose_config(["scale=smoke", f"first_stage={preset}"])
    model = build_first_stage(cfg.first_stage, resolution=32).eval()
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    with torch.no_grad():
        z = model.encode(x)
        y = model.decode(z)
    f = cfg.first_stage.f
    assert (model.f, model.latent_channels) == (f, CHANNELS[preset])
    assert z.shape == (2, CHANNELS[preset], 32 // f, 32 // f)
    assert y.shape == x.shape and torch.isfinite(y).all()
    assert model.scale_factor == 1.0  # set from data when a KL stage is trained, never a literal


def test_kl_encode_is_the_posterior_mode_and_sampling_differs():
    cfg = compose_config(["scale=smoke", "first_stage=kl_f4"])
    model = build_first_stage(cfg.first_stage, resolution=32).eval()
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    with torch.no_grad():
        assert torch.equal(model.encode(x), model.encode(x))
        assert not torch.equal(model.encode(x), model.encode(x, sample=True))
        out = model.reconstruct(x)
    assert out.kl.shape == (2,) and (out.kl >= 0).all() and out.codebook is None


def test_vq_quantises_inside_the_decoder_and_reports_codes():
    cfg = compose_config(["scale=smoke", "first_stage=vq_f4", "first_stage.vq_beta=0.5"])
    model = build_first_stage(cfg.first_stage, resolution=32).eval()
    assert model.net.quantize.beta == 0.5
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    with torch.no_grad():
        z = model.encode(x)
        quantised, _, _ = model.net.quantize(z)
        assert not torch.equal(z, quantised)  # encode returns pre-quantisation latents
        out = model.reconstruct(x)
    assert out.codebook.ndim == 0 and out.kl is None
    assert out.indices.shape == (2 * 8 * 8,) and out.indices.max() < cfg.first_stage.codebook_size
    assert torch.allclose(model.decode(z), out.rec, atol=1e-5)


def test_attention_sits_at_the_configured_feature_sizes():
    cfg = compose_config(["scale=smoke", "first_stage=kl_f16"])  # attn_resolutions [16]
    model = build_first_stage(cfg.first_stage, resolution=32)
    kinds = [type(b).__name__ for b in model.net.encoder.down_blocks]
    assert kinds == ["DownEncoderBlock2D", "AttnDownEncoderBlock2D"] + ["DownEncoderBlock2D"] * 3
    assert [type(b).__name__ for b in model.net.decoder.up_blocks] == list(reversed(
        [k.replace("DownEncoder", "UpDecoder") for k in kinds]))


def test_patch_discriminator_gives_one_logit_per_patch():
    disc = PatchDiscriminator(3, channels=8, n_layers=3)
    logits = disc(torch.randn(2, 3, 32, 32))
    assert logits.shape == (2, 1, 2, 2)
    assert sum(isinstance(m, torch.nn.Conv2d) for m in disc) == 5  # 3-layer PatchGAN
