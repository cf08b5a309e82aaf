"""DeepPedestrian: 17 plain 3 x 3 convolutions with two residual blocks. RF 35."""
from __future__ import annotations

import torch
from torch import nn

from .layers import conv
from .registry import register_model


def _relu_convs(n: int) -> nn.Sequential:
    """(ReLU -> conv 3, 48) repeated n times."""
    return nn.Sequential(*(m for _ in range(n) for m in (nn.ReLU(), conv(48, 48, 3))))


@register_model("deeppedestrian", default_checkpoint="deeppedestrian")
class DeepPedestrian(nn.Module):
    """No normalisation layers and no output activation (the output is unbounded)."""

    receptive_field = 35

    def __init__(self):
        super().__init__()
        self.block1 = nn.Sequential(conv(2, 48, 3), _relu_convs(3))
        self.block2 = _relu_convs(4)
        self.block3 = _relu_convs(4)
        self.block4 = _relu_convs(4)
        self.head = nn.Sequential(nn.ReLU(), conv(48, 1, 3))

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        x1 = self.block1(torch.cat([a, b], dim=1))
        x3 = x1 + self.block2(x1)
        x4 = self.block3(x3)
        x6 = x4 + self.block4(x4)
        return self.head(x6)
