"""Training-free baselines: constant and intensity-adaptive weighted averages."""
from __future__ import annotations

import torch
from torch import nn

from .registry import register_model


@register_model("weighted-average")
class WeightedAverage(nn.Module):
    """F = w * A + (1 - w) * B with a constant weight w in [0, 1] (default 0.5).

    Jacobian: dF(p)/dA(p) = w, dF(p)/dB(p) = 1 - w, zero elsewhere. RF 1.
    """

    receptive_field = 1

    def __init__(self, w: float = 0.5):
        super().__init__()
        if not 0.0 <= float(w) <= 1.0:
            raise ValueError(f"weighted-average: weight w must lie in [0, 1], got {w}")
        self.w = float(w)

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return self.w * a + (1.0 - self.w) * b

    def extra_repr(self) -> str:
        return f"w={self.w}"


@register_model("adaptive-average")
class AdaptiveAverage(nn.Module):
    """The prototype's intensity-weighted average, differentiated for real.

    F = w_A * A + w_B * B with w_A = A / (A + B), w_B = B / (A + B), i.e.
    F = (A^2 + B^2) / (A + B). Where A + B < eps (0/0) the weights are 0.5 each,
    so F = (A + B) / 2 there and the gradient is 0.5 for both inputs. Unlike the
    prototype, the weights are not treated as constants: the Jacobian is the true
    derivative, dF/dA = (A^2 + 2AB - B^2) / (A + B)^2.
    """

    receptive_field = 1
    eps = 1e-6

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        s = a + b
        defined = s > self.eps
        safe_s = torch.where(defined, s, torch.ones_like(s))
        return torch.where(defined, (a * a + b * b) / safe_s, 0.5 * s)
