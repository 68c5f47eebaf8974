"""Agreement with ``torch_fidelity.calculate_metrics`` given the same weights file (acceptance)."""

from __future__ import annotations

import pytest
import torch

from evaluation.sources import TensorSource
from evaluation.workers import evaluate
from platform.bench.eval import UInt8Images
from tests.evaluation.conftest import digit_images


@pytest.mark.slow  # Inception twice over 2 × 12 images (ours, then torch-fidelity's)
def test_fid_kid_pr_agree_with_torch_fidelity(detector):
    import torch_fidelity

    fake, real = digit_images((0, 1, 2, 3, 4), 12), digit_images((5, 6, 7, 8, 9), 12)
    # KID subsets of 6 = N/2: below our cap (subsets must differ), so both draw the same subsets.
    ours = evaluate(TensorSource(fake), TensorSource(real), metrics="fid,kid,pr", num_workers=0, use_cache=False,
                    kid_subset_size=6, kid_subsets=10, detector=detector).metrics
    theirs = torch_fidelity.calculate_metrics(
        input1=UInt8Images(fake), input2=UInt8Images(real), cuda=False, fid=True, kid=True, prc=True,
        feature_extractor="inception-v3-compat", feature_layer_prc="2048",  # PR on Inception pool features
        feature_extractor_weights_path=str(detector.asset.path),
        kid_subset_size=6, kid_subsets=10, batch_size=12, cache=False, verbose=False, save_cpu_ram=True,
    )
    assert ours["fid"].value == pytest.approx(theirs["frechet_inception_distance"], rel=1e-4)
    assert ours["kid"].value == pytest.approx(theirs["kernel_inception_distance_mean"], rel=1e-4)
    assert ours["precision"].value == pytest.approx(theirs["precision"], rel=1e-4)
    assert ours["recall"].value == pytest.approx(theirs["recall"], rel=1e-4)
    assert ours["fid"].value > 1.0  # different digit classes really differ
