"""The FID Inception detector: uint8 images of any size → 2048-d pool features (and logits).

It is torch-fidelity's own ``FeatureExtractorInceptionV3`` (TF1-compatible bilinear resize
to 299², the 2015-12-05 TF graph's layers), loaded from ``evaluation.assets``, so features
match ``torch_fidelity.calculate_metrics`` given the same weights file.
"""

from __future__ import annotations

from typing import Optional

import torch

from evaluation.assets import ResolvedAsset, resolve_inception

IS_UNAVAILABLE = (
    "the offline Inception weights have no 1008-way fc layer; provide "
    "weights-inception-2015-12-05-6726825d.pth via eval.inception_weights or $TORCH_HOME"
)


def detector_hash(asset: ResolvedAsset) -> str:
    """Names the features (network, layer, weights file) so cached statistics never mix detectors."""
    return f"inception-2015-12-05-pool3-{asset.sha256[:16]}"


class InceptionDetector:
    """Batched Inception feature extraction on one device.

    Args:
        asset: resolved weights (default: :func:`evaluation.assets.resolve_inception`).
        device: ``"cpu"``, ``"cuda"``, ``"cuda:1"`` …
        batch_size: images per forward pass.
        channels_last: NHWC convolutions (~1.4× faster on CPU, and on GPU tensor cores).
    """

    def __init__(
        self,
        asset: Optional[ResolvedAsset] = None,
        *,
        device: str | torch.device = "cpu",
        batch_size: int = 64,
        channels_last: bool = True,
    ) -> None:
        from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

        self.asset = asset or resolve_inception()
        self.device = torch.device(device)
        self.batch_size = int(batch_size)
        self.channels_last = channels_last
        # Logits for IS only from a real classifier: a zero fc gives IS = 1.0 for anything.
        self.has_logits = self.asset.has_classifier
        layers = ["2048", "logits_unbiased"] if self.has_logits else ["2048"]
        self.net = FeatureExtractorInceptionV3(
            "inception-v3-compat", layers, feature_extractor_weights_path=str(self.asset.path)
        ).to(self.device)
        if channels_last:
            self.net = self.net.to(memory_format=torch.channels_last)

    @property
    def hash(self) -> str:
        """Identifies what the features are (weights + layer) for reference caching."""
        return detector_hash(self.asset)

    @torch.no_grad()
    def __call__(self, images: torch.Tensor) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
        """Features of a uint8 (N, 3, H, W) batch.

        Returns:
            (features (N, 2048) float32 on CPU, unbiased logits (N, 1008) or None).
        """
        if images.dtype != torch.uint8 or images.dim() != 4 or images.shape[1] != 3:
            raise ValueError(
                f"the Inception detector takes uint8 (N, 3, H, W) images, got {images.dtype} {tuple(images.shape)}; "
                "convert float images in [-1, 1] with ((x + 1) * 127.5).round().clamp(0, 255).to(torch.uint8)"
            )
        features, logits = [], []
        for chunk in images.split(self.batch_size):
            chunk = chunk.to(self.device, non_blocking=True)
            if self.channels_last:
                chunk = chunk.contiguous(memory_format=torch.channels_last)
            out = self.net(chunk)
            features.append(out[0].float().cpu())
            if self.has_logits:
                logits.append(out[1].float().cpu())
        feats = torch.cat(features) if features else torch.zeros(0, 2048)
        return feats, (torch.cat(logits) if self.has_logits and logits else None)
