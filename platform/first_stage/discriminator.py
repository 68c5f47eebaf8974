"""PatchGAN discriminator (Isola et al. 2017), as used by taming-transformers and CompVis.

Each output logit judges one receptive-field patch of the image; the first-stage loss
uses it with a hinge loss (``platform.first_stage.loss``).
"""

from __future__ import annotations

from torch import nn


class PatchDiscriminator(nn.Sequential):
    """``n_layers`` strided conv + BatchNorm + LeakyReLU stages, then a 1-channel logit map.

    Args:
        in_channels: image channels.
        channels: width of the first layer (CompVis ``disc_ndf`` = 64); doubles per layer, max ×8.
        n_layers: number of stride-2 stages (CompVis ``disc_num_layers`` = 3).
    Input (B, C, H, W) -> logits (B, 1, h, w), one per patch.
    """

    def __init__(self, in_channels: int = 3, channels: int = 64, n_layers: int = 3) -> None:
        layers: list[nn.Module] = [nn.Conv2d(in_channels, channels, 4, stride=2, padding=1), nn.LeakyReLU(0.2, True)]
        mult = 1
        for n in range(1, n_layers + 1):
            prev, mult = mult, min(2**n, 8)
            stride = 2 if n < n_layers else 1  # the last stage keeps resolution (pix2pix)
            layers += [
                nn.Conv2d(channels * prev, channels * mult, 4, stride=stride, padding=1, bias=False),
                nn.BatchNorm2d(channels * mult),
                nn.LeakyReLU(0.2, True),
            ]
        layers.append(nn.Conv2d(channels * mult, 1, 4, stride=1, padding=1))
        super().__init__(*layers)
        self.apply(_init_weights)


def _init_weights(module: nn.Module) -> None:
    # DCGAN initialisation, as in taming's ``weights_init``.
    if isinstance(module, nn.Conv2d):
        nn.init.normal_(module.weight, 0.0, 0.02)
    elif isinstance(module, nn.BatchNorm2d):
        nn.init.normal_(module.weight, 1.0, 0.02)
        nn.init.zeros_(module.bias)
