"""Agreement with ``torch_fidelity.calculate_metrics`` given the same weights file (acceptance)."""

from __future__ import annotations

import pytest
import torch

from evaluation.sources import TensorSource
from evaluation.workers import evaluate
from platform.bench.eval import UInt8Images
from tests.evaluation.conftest import digit_images


@pytest.fixture(scope="module")
def detector_with_classifier(inception_asset, tmp_path_factory):
    """The offline Inception with a random, non-zero 1008-way fc: IS then runs through the real
    detector (the offline weights have no fc, and a zero one would give IS = 1 for anything)."""
    from evaluation.assets import resolve_inception
    from evaluation.detector import InceptionDetector

    state = torch.load(inception_asset.path, map_location="cpu", weights_only=True)
    g = torch.Generator().manual_seed(0)
    state["fc.weight"] = torch.randn(1008, 2048, generator=g) * 0.05
    state["fc.bias"] = torch.randn(1008, generator=g) * 0.1
    path = tmp_path_factory.mktemp("inception_fc") / "inception-random-fc.pth"
    torch.save(state, path)
    asset = resolve_inception(path)
    assert asset.has_classifier
    return InceptionDetector(asset, device="cpu", batch_size=16)


@pytest.mark.slow  # Inception twice over 2 × 12 images (ours, then torch-fidelity's)
def test_fid_kid_pr_is_agree_with_torch_fidelity(detector_with_classifier):
    import torch_fidelity

    detector = detector_with_classifier
    fake, real = digit_images((0, 1, 2, 3, 4), 12), digit_images((5, 6, 7, 8, 9), 12)
    # KID subsets of 6 = N/2: below our cap (subsets must differ), so both draw the same subsets.
    ours = evaluate(TensorSource(fake), TensorSource(real), metrics="fid,kid,pr,is", num_workers=0, use_cache=False,
                    kid_subset_size=6, kid_subsets=10, is_splits=3, detector=detector).metrics
    theirs = torch_fidelity.calculate_metrics(
        input1=UInt8Images(fake), input2=UInt8Images(real), cuda=False, fid=True, kid=True, prc=True, isc=True,
        feature_extractor="inception-v3-compat", feature_layer_prc="2048",  # PR on Inception pool features
        feature_extractor_weights_path=str(detector.asset.path), isc_splits=3,
        kid_subset_size=6, kid_subsets=10, batch_size=12, cache=False, verbose=False, save_cpu_ram=True,
    )
    assert ours["is"].value == pytest.approx(theirs["inception_score_mean"], rel=1e-4)
    assert ours["is"].value > 1.05  # the random classifier separates the images: not the zero-fc 1.0
    assert ours["fid"].value == pytest.approx(theirs["frechet_inception_distance"], rel=1e-4)
    assert ours["kid"].value == pytest.approx(theirs["kernel_inception_distance_mean"], rel=1e-4)
    assert ours["precision"].value == pytest.approx(theirs["precision"], rel=1e-4)
    assert ours["recall"].value == pytest.approx(theirs["recall"], rel=1e-4)
    assert ours["fid"].value > 1.0  # different digit classes really differ
