"""The paper's training loss (SSIM + MSE) on torch batches."""
from __future__ import annotations

from dataclasses import dataclass

import torch
from pytorch_msssim import ssim as _ssim


@dataclass(frozen=True)
class LossWeights:
    """L = lam [gs (1 - SSIM(F, A)) + (1 - gs)(1 - SSIM(F, B))] + (1 - lam)[g2 MSE(F, A) + (1 - g2) MSE(F, B)]."""
    lam: float = 0.99
    gs: float = 0.5
    g2: float = 0.5


def ssim(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per-image SSIM, (N,), of (N, 1, H, W) batches: 11 x 11 Gaussian window, sigma 1.5, range 1."""
    return _ssim(x, y, data_range=1.0, win_size=11, win_sigma=1.5, size_average=False)


def mse(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per-image mean squared error, (N,)."""
    return ((x - y) ** 2).flatten(1).mean(1)


def fusion_loss(fused: torch.Tensor, a: torch.Tensor, b: torch.Tensor, w: LossWeights) -> torch.Tensor:
    """The paper's loss per image, (N,), of a fused batch against both sources, all (N, 1, H, W)."""
    ssim_term = w.gs * (1 - ssim(fused, a)) + (1 - w.gs) * (1 - ssim(fused, b))
    mse_term = w.g2 * mse(fused, a) + (1 - w.g2) * mse(fused, b)
    return w.lam * ssim_term + (1 - w.lam) * mse_term
