"""FunFuseAn (Kumar & Gumhold): low/high-frequency branches per input. RF 23 (19 on MRI)."""
from __future__ import annotations

import torch
from torch import nn

from .layers import UnitTanh, conv, conv_bn_act
from .registry import register_model


@register_model("funfusean", default_checkpoint="funfusean")
class FunFuseAn(nn.Module):
    """Two branches per input, fused pixel-wise, then reconstructed.

    High-frequency rule: the paper's relative-dominance rule with a guard,
    ``h = max(h1, h2) / (|h1| + |h2| + eps)`` with eps = 0.1. The paper's
    ``max / (h1 + h2)`` divides by a sum that LeakyReLU lets reach zero (or
    change sign); the absolute values and eps keep the denominator >= 0.1, so h
    lies in (-1, 1) and its derivatives stay bounded.
    """

    receptive_field = 23
    hf_eps = 0.1

    def __init__(self):
        super().__init__()
        self.mri_low = conv_bn_act(1, 16, 9)
        self.mri_high = nn.Sequential(conv_bn_act(1, 16, 3), conv_bn_act(16, 32, 3),
                                      conv_bn_act(32, 64, 3))
        self.pet_low = conv_bn_act(1, 16, 7)
        self.pet_high = nn.Sequential(conv_bn_act(1, 16, 5), conv_bn_act(16, 32, 5),
                                      conv_bn_act(32, 64, 3))
        self.recon1 = nn.Sequential(conv_bn_act(64, 32, 5), conv_bn_act(32, 16, 5))
        self.recon2 = nn.Sequential(conv(16, 1, 5), UnitTanh())

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        h1, h2 = self.mri_high(a), self.pet_high(b)
        h = torch.maximum(h1, h2) / (h1.abs() + h2.abs() + self.hf_eps)
        g = (self.mri_low(a) + self.pet_low(b) + self.recon1(h)) / 3.0
        return self.recon2(g)
