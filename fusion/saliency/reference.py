"""Plain full-image autograd: the reference every fast path of the engine is checked against.

``run`` calls a fusion model and checks its output's shape; ``full_rows`` computes exact Jacobian
rows by one backward pass on the whole image; ``corner_pixels`` picks the pixels the checks compare
(the four corners, the centre and a few random ones).
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn


def run(model: nn.Module, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``model(a, b)`` for (N, 1, H, W) inputs, checked to return (N, 1, H, W)."""
    out = model(a, b)
    if not isinstance(out, torch.Tensor) or out.shape != a.shape:
        shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise ValueError(f"{type(model).__name__}.forward(a, b) returned {shape} for inputs of shape "
                         f"{tuple(a.shape)}; a fusion model must return (N, 1, H, W) like its inputs")
    return out


def corner_pixels(height: int, width: int, extra: int = 2, seed: int = 0) -> list[tuple[int, int]]:
    """The four corners, the centre and ``extra`` random pixels of an image."""
    rng = np.random.default_rng(seed)
    pixels = [(0, 0), (0, width - 1), (height - 1, 0), (height - 1, width - 1), (height // 2, width // 2)]
    pixels += [(int(rng.integers(height)), int(rng.integers(width))) for _ in range(extra)]
    return list(dict.fromkeys(pixels))


def full_rows(model: nn.Module, a: torch.Tensor, b: torch.Tensor, pixels,
              weights: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Exact Jacobian rows by full-image autograd; a, b (H, W) -> rows_a, rows_b (K, H, W), values (K,).

    With ``weights`` (K,), one backward pass returns the single row sum_k w_k dF(p_k)/d(a, b),
    as two (1, H, W) tensors.
    """
    a = a[None, None].clone().requires_grad_(True)
    b = b[None, None].clone().requires_grad_(True)
    with torch.enable_grad():
        out = run(model, a, b)
        picked = torch.stack([out[0, 0, r, c] for r, c in pixels])
        seeds = [picked @ weights.to(picked.dtype)] if weights is not None else list(picked)
        rows_a, rows_b = [], []
        for k, seed in enumerate(seeds):
            ga, gb = torch.autograd.grad(seed, (a, b), retain_graph=k + 1 < len(seeds), allow_unused=True)
            rows_a.append(torch.zeros_like(a[0, 0]) if ga is None else ga[0, 0])
            rows_b.append(torch.zeros_like(b[0, 0]) if gb is None else gb[0, 0])
    return torch.stack(rows_a), torch.stack(rows_b), picked.detach()
