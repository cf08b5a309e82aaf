"""Per-pixel Jacobians: exact against full-image autograd for every model and for awkward test models."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from saliency_helpers import (
    Dilated,
    DownUp,
    FunctionalPool,
    GlobalGate,
    MeanSubtract,
    assert_rows_equal,
    border_pixels,
    brute_rows,
    build,
    fresh,
    pair,
)
from torch import nn

import fusion
from fusion.saliency import Method, analyse, crop_windows, pixel_jacobian, pixel_jacobians, receptive_field


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
    assert all(r.method == Method.CROPS for r in results)
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


# ------------------------------------------------------------------ awkward models (saliency_helpers)
@pytest.mark.parametrize("cls, method", [(DownUp, Method.CROPS), (Dilated, Method.CROPS),
                                         (FunctionalPool, Method.FULL_IMAGE), (MeanSubtract, Method.FULL_IMAGE),
                                         (GlobalGate, Method.FULL_IMAGE)])
@pytest.mark.parametrize("shape", [(29, 37), (40, 33)])
def test_awkward_models_exact_and_labelled(cls, method, shape):
    model = build(cls)
    a, b = pair(*shape, seed=11)
    pixels = border_pixels(*shape, seed=shape[0])
    results = pixel_jacobians(model, a, b, pixels)
    want_a, want_b, _ = brute_rows(model, a, b, pixels)
    assert_rows_equal(results, want_a, want_b)
    assert {r.method for r in results} == {method}
    if method == Method.FULL_IMAGE:
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
