"""Evaluation decodes in fp32 even when the denoiser runs under bf16 autocast (CPU and GPU FIDs compare)."""

from __future__ import annotations

import pytest
import torch

from platform.config.compose import compose_config
from platform.first_stage.load import load_first_stage
from platform.ldm.pipeline import LdmPipeline
from platform.ldm.train import build_model
from tests.platform.ldm.conftest import make_first_stage_checkpoint


def _pipeline_with_spy(tmp_path, device: torch.device) -> tuple[LdmPipeline, list]:
    cfg = compose_config(["scale=smoke", "first_stage=kl_f8", "ldm.conditioning=class"])
    first_stage = load_first_stage(make_first_stage_checkpoint(tmp_path)).to(device).eval()
    model, cond_input = build_model(cfg, first_stage, device)
    pipeline = LdmPipeline(model.eval(), first_stage, cond_input, first_stage.scale_factor, cfg.ldm.diffusion,
                           num_classes=cfg.data.num_classes)
    seen, decode = [], first_stage.decode

    def spy(z):
        seen.append((z.dtype, torch.is_autocast_enabled(device.type)))
        return decode(z)

    first_stage.decode = spy
    return pipeline, seen


def test_decoder_runs_in_fp32_even_inside_an_autocast_region(tmp_path):
    pipeline, seen = _pipeline_with_spy(tmp_path, torch.device("cpu"))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        images = pipeline.generate([0, 1], seed=0, steps=2)
    assert images.dtype == torch.uint8 and seen == [(torch.float32, False)]


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="bf16 autocast is only enabled on CUDA")
def test_decoder_runs_in_fp32_under_cuda_autocast(tmp_path):
    pipeline, seen = _pipeline_with_spy(tmp_path, torch.device("cuda"))
    images = pipeline.generate([0, 1], seed=0, steps=2, autocast=True)
    assert images.dtype == torch.uint8 and seen == [(torch.float32, False)]
