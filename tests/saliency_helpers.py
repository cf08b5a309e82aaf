"""Shared helpers of the saliency tests: fresh models, random pairs, brute-force references, awkward models."""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

import fusion


def fresh(name: str, dtype=torch.float64) -> nn.Module:
    torch.manual_seed(0)
    return fusion.create_model(name, checkpoint=None).to(dtype)


def pair(height: int, width: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.random((height, width)), rng.random((height, width))


def brute_rows(model, a, b, pixels):
    """Reference: one full-image backward pass per pixel, float64, (K, H, W) arrays."""
    ta = torch.tensor(a, dtype=torch.float64)[None, None].requires_grad_(True)
    tb = torch.tensor(b, dtype=torch.float64)[None, None].requires_grad_(True)
    out = model.double()(ta, tb)
    rows_a, rows_b = [], []
    for r, c in pixels:
        ga, gb = torch.autograd.grad(out[0, 0, r, c], (ta, tb), retain_graph=True, allow_unused=True)
        rows_a.append(np.zeros(a.shape) if ga is None else ga[0, 0].numpy())
        rows_b.append(np.zeros(b.shape) if gb is None else gb[0, 0].numpy())
    return np.stack(rows_a), np.stack(rows_b), out[0, 0].detach().numpy()


def border_pixels(height: int, width: int, n_random: int = 2, seed: int = 1) -> list[tuple[int, int]]:
    """Four corners, two edge midpoints (one per side pair, alternating with the seed) and random pixels."""
    rng = np.random.default_rng(seed)
    pixels = [(0, 0), (0, width - 1), (height - 1, 0), (height - 1, width - 1)]
    pixels += [(0, width // 2), (height // 2, width - 1)] if seed % 2 else [(height - 1, width // 2),
                                                                              (height // 2, 0)]
    return pixels + [(int(rng.integers(height)), int(rng.integers(width))) for _ in range(n_random)]


def assert_rows_equal(results, want_a, want_b, rtol=1e-6):
    for k, res in enumerate(results):
        for got, want in ((res.ja, want_a[k]), (res.jb, want_b[k])):
            assert got.dtype == np.float32 and got.shape == want.shape
            scale = max(np.abs(want).max(), 1e-12)
            np.testing.assert_allclose(got, want, rtol=0, atol=rtol * scale,
                                       err_msg=f"pixel {res.row, res.col} via {res.method}")



def brute_jacobian(model, a, b):
    """The whole Jacobian by autograd, float64: two (H, W, H, W) arrays J[p, q] = dF(p)/dx(q), and F."""
    ta = torch.tensor(a, dtype=torch.float64)[None, None]
    tb = torch.tensor(b, dtype=torch.float64)[None, None]
    model = model.double()
    ja, jb = torch.autograd.functional.jacobian(lambda x, y: model(x, y)[0, 0], (ta, tb), vectorize=True)
    h, w = a.shape
    return ja.reshape(h, w, h, w).numpy(), jb.reshape(h, w, h, w).numpy(), model(ta, tb)[0, 0].detach().numpy()


# ------------------------------------------------------------------ awkward models
class DownUp(nn.Module):
    """Stride-2 convolution, work at half resolution, nearest upsampling back (total stride 2)."""

    def __init__(self):
        super().__init__()
        self.inp = nn.Conv2d(2, 6, 3, padding=1)
        self.down = nn.Conv2d(6, 6, 3, stride=2, padding=1)
        self.mid = nn.Conv2d(6, 6, 3, padding=1)
        self.up = nn.Upsample(scale_factor=2, mode="nearest")
        self.out = nn.Conv2d(6, 1, 3, padding=1)

    def forward(self, a, b):
        x = torch.tanh(self.inp(torch.cat([a, b], 1)))
        x = torch.tanh(self.mid(torch.tanh(self.down(x))))
        return self.out(self.up(x)[..., :a.shape[-2], :a.shape[-1]])


class FunctionalPool(nn.Module):
    """Average pooling and upsampling written as functions: no module reveals the stride."""

    def __init__(self):
        super().__init__()
        self.inp = nn.Conv2d(2, 4, 3, padding=1)
        self.out = nn.Conv2d(4, 1, 3, padding=1)

    def forward(self, a, b):
        x = torch.tanh(self.inp(torch.cat([a, b], 1)))
        x = F.interpolate(F.avg_pool2d(x, 2, ceil_mode=True), scale_factor=2, mode="nearest")
        return self.out(x[..., :a.shape[-2], :a.shape[-1]])


class Dilated(nn.Module):
    """Dilated 3 x 3 convolutions (dilation 1, 2, 3): receptive field 13."""

    def __init__(self):
        super().__init__()
        self.convs = nn.ModuleList([nn.Conv2d(2, 5, 3, padding=1), nn.Conv2d(5, 5, 3, padding=2, dilation=2),
                                    nn.Conv2d(5, 1, 3, padding=3, dilation=3)])

    def forward(self, a, b):
        x = torch.cat([a, b], 1)
        for k, conv in enumerate(self.convs):
            x = conv(x) if k == len(self.convs) - 1 else torch.tanh(conv(x))
        return x


class MeanSubtract(nn.Module):
    """Subtracts the image mean of its features: every output depends on every input."""

    def __init__(self):
        super().__init__()
        self.inp = nn.Conv2d(2, 3, 3, padding=1)
        self.out = nn.Conv2d(3, 1, 3, padding=1)

    def forward(self, a, b):
        x = torch.tanh(self.inp(torch.cat([a, b], 1)))
        return self.out(x - x.mean(dim=(2, 3), keepdim=True))


class GlobalGate(nn.Module):
    """Squeeze-and-excitation style gating by global average pooling."""

    def __init__(self):
        super().__init__()
        self.inp = nn.Conv2d(2, 4, 3, padding=1)
        self.gate = nn.Linear(4, 4)
        self.out = nn.Conv2d(4, 1, 1)

    def forward(self, a, b):
        x = torch.tanh(self.inp(torch.cat([a, b], 1)))
        g = torch.sigmoid(self.gate(x.mean(dim=(2, 3))))[..., None, None]
        return self.out(x * g)


def build(cls) -> nn.Module:
    torch.manual_seed(0)
    return cls().double().eval()


