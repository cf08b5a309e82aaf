"""Small building blocks shared by the fusion networks."""
from __future__ import annotations

from torch import nn


def conv(in_ch: int, out_ch: int, k: int) -> nn.Conv2d:
    """A k x k stride-1 convolution with "same" zero padding."""
    return nn.Conv2d(in_ch, out_ch, k, padding=k // 2)


def conv_bn_act(in_ch: int, out_ch: int, k: int, act: nn.Module | None = None) -> nn.Sequential:
    """conv k -> BatchNorm2d -> activation (LeakyReLU(0.2) unless given)."""
    return nn.Sequential(conv(in_ch, out_ch, k), nn.BatchNorm2d(out_ch),
                         act if act is not None else nn.LeakyReLU(0.2))


class UnitTanh(nn.Module):
    """tanh mapped affinely onto [0, 1]: (tanh(z) + 1) / 2.

    The paper's networks end in tanh, whose range (-1, 1) does not match the
    [0, 1] images they are trained against. A plain tanh head trained poorly
    here (black background needs z = 0 exactly, tanh's steepest point); this
    head reaches black by saturating, like a sigmoid, and keeps tanh's shape.
    """

    def forward(self, z):
        return 0.5 * (z.tanh() + 1.0)
