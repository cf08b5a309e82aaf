"""Per-pixel Jacobians: exact against full-image autograd for every model and for awkward test models."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import fusion
from fusion.saliency import analyse, crop_windows, pixel_jacobian, pixel_jacobians, receptive_field


# ------------------------------------------------------------------ helpers
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


# ------------------------------------------------------------------ registered models
@pytest.mark.parametrize("name", fusion.list_models())
@pytest.mark.parametrize("shape", [(29, 37), (40, 33)])
def test_registered_models_exact(name, shape):
    model = fresh(name)
    a, b = pair(*shape)
    pixels = border_pixels(*shape, seed=shape[0])
    results = pixel_jacobians(model, a, b, pixels)
    want_a, want_b, out = brute_rows(model, a, b, pixels)
    assert_rows_equal(results, want_a, want_b)
    assert all(r.method == "crop" for r in results)
    for res in results:
        assert res.value == pytest.approx(out[res.row, res.col], rel=1e-6, abs=1e-7)
    # the tuple API agrees with the batched one
    ja, jb = pixel_jacobian(model, a, b, *pixels[-1])
    np.testing.assert_array_equal(ja, results[-1].ja)
    np.testing.assert_array_equal(jb, results[-1].jb)


@pytest.mark.parametrize("name", fusion.list_models())
def test_image_smaller_than_receptive_field(name):
    model = fresh(name)
    a, b = pair(11, 9, seed=3)
    pixels = border_pixels(11, 9, n_random=0)
    want_a, want_b, _ = brute_rows(model, a, b, pixels)
    assert_rows_equal(pixel_jacobians(model, a, b, pixels), want_a, want_b)


@pytest.mark.parametrize("name", fusion.list_models())
def test_float32_model_matches_float64_reference(name):
    model32 = fresh(name, torch.float32)
    a, b = pair(33, 29, seed=5)
    pixels = border_pixels(33, 29, n_random=1, seed=2)
    results = pixel_jacobians(model32, a, b, pixels)
    want_a, want_b, _ = brute_rows(fresh(name), a, b, pixels)
    assert_rows_equal(results, want_a, want_b, rtol=1e-4)


@pytest.mark.parametrize("name", fusion.list_models())
def test_probed_field_matches_declared(name):
    """The probe derives the field itself; the built-in models also declare it."""
    model = fresh(name, torch.float32)
    field = analyse(model)
    assert field.local and field.stride == 1
    assert field.up == field.down == field.left == field.right
    declared = getattr(model, "receptive_field", None)
    if declared is not None:
        assert receptive_field(model) == declared


def test_weighted_average_analytic():
    model = fusion.create_model("weighted-average", w=0.3)
    a, b = pair(20, 24)
    for r, c in border_pixels(20, 24):
        ja, jb = pixel_jacobian(model, a, b, r, c)
        want_a, want_b = np.zeros((20, 24), np.float32), np.zeros((20, 24), np.float32)
        want_a[r, c], want_b[r, c] = 0.3, 0.7
        np.testing.assert_allclose(ja, want_a, atol=1e-7)
        np.testing.assert_allclose(jb, want_b, atol=1e-7)
    assert receptive_field(model) == 1


def test_adaptive_average_analytic():
    model = fusion.create_model("adaptive-average", checkpoint=None).double()
    a, b = pair(16, 12, seed=7)
    a[0, 0] = b[0, 0] = 0.0  # the 0/0 point: gradient 0.5 for both inputs
    for r, c in [(0, 0), (3, 4), (15, 11), (8, 2)]:
        ja, jb = pixel_jacobian(model, a, b, r, c)
        x, y = a[r, c], b[r, c]
        da = 0.5 if x + y == 0 else (x * x + 2 * x * y - y * y) / (x + y) ** 2
        db = 0.5 if x + y == 0 else (y * y + 2 * x * y - x * x) / (x + y) ** 2
        assert ja[r, c] == pytest.approx(da, rel=1e-6) and jb[r, c] == pytest.approx(db, rel=1e-6)
        assert np.count_nonzero(ja) <= 1 and np.count_nonzero(jb) <= 1


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


@pytest.mark.parametrize("cls, method", [(DownUp, "crop"), (Dilated, "crop"), (FunctionalPool, "full-image"),
                                         (MeanSubtract, "full-image"), (GlobalGate, "full-image")])
@pytest.mark.parametrize("shape", [(29, 37), (40, 33)])
def test_awkward_models_exact_and_labelled(cls, method, shape):
    model = build(cls)
    a, b = pair(*shape, seed=11)
    pixels = border_pixels(*shape, seed=shape[0])
    results = pixel_jacobians(model, a, b, pixels)
    want_a, want_b, _ = brute_rows(model, a, b, pixels)
    assert_rows_equal(results, want_a, want_b)
    assert {r.method for r in results} == {method}
    if method == "full-image":
        assert results[0].reason  # says why the fast path was not used
        assert results[0].window == (0, shape[0], 0, shape[1])


def test_stride_and_dilation_are_probed():
    down_up = analyse(build(DownUp))
    assert down_up.stride == 2 and down_up.local
    dilated = analyse(build(Dilated))
    assert (dilated.up, dilated.down, dilated.rows) == (6, 6, 13)
    mean = analyse(build(MeanSubtract))
    assert not mean.local and "global" in mean.reason


def test_crop_windows_are_aligned_and_hold_the_field():
    field = analyse(build(DownUp))
    height, width = 31, 26
    pixels = [(r, c) for r in range(height) for c in range(width)]
    for (r, c), (top, bottom, left, right) in zip(pixels, crop_windows(field, height, width, pixels), strict=True):
        assert top % 2 == 0 and left % 2 == 0
        assert top <= max(r - field.up, 0) and bottom >= min(r + field.down + 1, height)
        assert left <= max(c - field.left, 0) and right >= min(c + field.right + 1, width)
        assert (bottom - top) % 2 == 0 or bottom == height
        assert (right - left) % 2 == 0 or right == width


def test_window_is_the_clipped_field():
    model = fresh("masknet", torch.float32)
    a, b = pair(30, 30)
    (res,) = pixel_jacobians(model, a, b, [(2, 25)])
    assert res.window == (0, 11, 17, 30)
    outside = np.ones_like(res.ja, bool)
    outside[res.window[0]:res.window[1], res.window[2]:res.window[3]] = False
    assert not res.ja[outside].any() and not res.jb[outside].any()


def test_bad_arguments():
    model = fresh("weighted-average", torch.float32)
    a, b = pair(10, 10)
    with pytest.raises(IndexError):
        pixel_jacobian(model, a, b, 10, 0)
    with pytest.raises(ValueError):
        pixel_jacobian(model, a, b[:9], 0, 0)
    with pytest.raises(ValueError):
        pixel_jacobians(model, a, b, [(0, 0)], method="magic")


def test_model_with_wrong_output_shape_is_refused():
    class Shrinks(nn.Module):
        def forward(self, a, b):
            return (a + b)[..., 1:, 1:]

    with pytest.raises(ValueError, match="must return"):
        pixel_jacobian(Shrinks(), *pair(10, 10), 0, 0)


def test_verdict_follows_weight_changes():
    """Changing a model's weights in place invalidates the memoised field."""
    model = build(Dilated)
    first = analyse(model)
    with torch.no_grad():
        model.convs[2].weight.zero_()
        model.convs[2].weight[:, :, 1, 1] = 1.0  # last layer becomes 1 x 1: field shrinks to 7
    second = analyse(model)
    assert first.rows == 13 and second.rows == 7
