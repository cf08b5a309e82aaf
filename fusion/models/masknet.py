"""MaskNet: densely connected encoder on concat(A, B), plain decoder. RF 17."""
from __future__ import annotations

import torch
from torch import nn

from .layers import UnitTanh, conv, conv_bn_act
from .registry import register_model


@register_model("masknet", default_checkpoint="masknet")
class MaskNet(nn.Module):
    """Dense encoder (4 x conv 3, 48) and decoder 192 -> 128 -> 64 -> 1.

    Follows the paper's figure: no LeakyReLU before the final tanh (the
    prototype had one).
    """

    receptive_field = 17

    def __init__(self):
        super().__init__()
        # en1 sees the 2-channel input, en2 sees en1, en3 sees c1, en4 sees c2.
        self.encoder = nn.ModuleList(conv_bn_act(c, 48, 3) for c in (2, 48, 96, 144))
        self.decoder = nn.Sequential(
            conv_bn_act(192, 192, 3), conv_bn_act(192, 128, 3), conv_bn_act(128, 64, 3),
            conv(64, 1, 3), nn.BatchNorm2d(1), UnitTanh())

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        en1 = self.encoder[0](torch.cat([a, b], dim=1))
        features = [en1, self.encoder[1](en1)]
        for layer in self.encoder[2:]:
            features.append(layer(torch.cat(features, dim=1)))
        return self.decoder(torch.cat(features, dim=1))
