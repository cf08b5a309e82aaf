"""DeepFuse: Siamese feature extractor with shared weights, fusion by addition. RF 25."""
from __future__ import annotations

import torch
from torch import nn

from .layers import UnitTanh, conv, conv_bn_act
from .registry import register_model


@register_model("deepfuse", default_checkpoint="deepfuse")
class DeepFuse(nn.Module):
    """Shared encoder applied to A and to B, h = h_A + h_B, then a decoder."""

    receptive_field = 25

    def __init__(self):
        super().__init__()
        self.encoder = nn.Sequential(conv_bn_act(1, 16, 5), conv_bn_act(16, 32, 7, nn.ReLU()))
        self.decoder = nn.Sequential(
            conv_bn_act(32, 32, 7), conv_bn_act(32, 16, 5),
            conv(16, 1, 5), nn.BatchNorm2d(1), UnitTanh())

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encoder(a) + self.encoder(b))
