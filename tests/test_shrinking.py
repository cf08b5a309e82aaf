"""Shrinking windows (only the activations that reach the pixel): exact where used, refused where not."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from saliency_helpers import Dilated, DownUp, brute_jacobian, build, fresh, pair
from torch import nn

import fusion
from fusion.saliency import analyse, pixel_jacobians, verify_shrinking
from fusion.saliency.pixel import crop_rows
from fusion.saliency.shrinking import ShrinkingWindows, Unsupported


def every_pixel_rows(model, a, b, shrinking: bool):
    field = analyse(model)
    pixels = [(r, c) for r in range(a.shape[0]) for c in range(a.shape[1])]
    ta, tb = (torch.tensor(x, dtype=torch.float64) for x in (a, b))
    rows_a, rows_b, values = crop_rows(model, ta, tb, pixels, field, shrinking=shrinking)
    shape = (*a.shape, *a.shape)
    return rows_a.numpy().reshape(shape), rows_b.numpy().reshape(shape), values.numpy().reshape(a.shape)


@pytest.mark.parametrize("name", fusion.list_models())
def test_every_pixel_of_an_odd_image_matches_autograd(name):
    """All pixels (every border and corner case) of a 13 x 17 image, smaller than most fields."""
    model = fresh(name)
    a, b = pair(13, 17, seed=8)
    want_a, want_b, want_out = brute_jacobian(model, a, b)
    got_a, got_b, got_out = every_pixel_rows(model, a, b, shrinking=True)
    for got, want in ((got_a, want_a), (got_b, want_b), (got_out, want_out)):
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-12 * max(np.abs(want).max(), 1.0))


@pytest.mark.parametrize("name", fusion.list_models())
def test_registered_models_use_shrinking_windows(name):
    assert verify_shrinking(fresh(name), 40, 33)
    assert verify_shrinking(fresh(name, torch.float32), 256, 256)


@pytest.mark.parametrize("name", fusion.list_models())
def test_interior_window_shrinks_to_the_pixel(name):
    """Away from the border, the last activation is exactly the one pixel asked for."""
    model = fresh(name)
    field = analyse(model)
    window = torch.rand(1, 1, field.rows, field.cols, dtype=torch.float64)
    out, extent = ShrinkingWindows((False,) * 4).run(model, window, window.clone())
    assert out.shape[-2:] == (1, 1)
    assert (extent.top, extent.left) == (field.up, field.left)


class ReflectPadded(nn.Module):
    """Local, but its reflect padding is an F.pad the shrinking windows do not follow."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(2, 1, 3, padding=1, padding_mode="reflect")

    def forward(self, a, b):
        return self.conv(torch.cat([a, b], dim=1))


class ShiftedSkip(nn.Module):
    """A spatial roll: local near the centre, but not an operation the windows understand."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(2, 1, 3, padding=1)

    def forward(self, a, b):
        x = self.conv(torch.cat([a, b], dim=1))
        return x + torch.roll(a, shifts=1, dims=-1)


@pytest.mark.parametrize("cls", [ReflectPadded, ShiftedSkip, DownUp])
def test_unsupported_models_keep_the_plain_crop_path(cls):
    model = build(cls)
    assert not verify_shrinking(model, 29, 31)
    a, b = pair(29, 31, seed=2)
    pixels = [(0, 0), (28, 30), (14, 15), (0, 17)]
    results = pixel_jacobians(model, a, b, pixels)
    want_a, want_b, _ = brute_jacobian(model, a, b)
    for res in results:
        np.testing.assert_allclose(res.ja, want_a[res.row, res.col], atol=1e-6)
        np.testing.assert_allclose(res.jb, want_b[res.row, res.col], atol=1e-6)


def test_dilated_convolutions_shrink_exactly():
    model = build(Dilated)
    assert verify_shrinking(model, 30, 30)
    a, b = pair(15, 14, seed=4)
    want_a, want_b, _ = brute_jacobian(model, a, b)
    got_a, got_b, _ = every_pixel_rows(model, a, b, shrinking=True)
    np.testing.assert_allclose(got_a, want_a, atol=1e-12)
    np.testing.assert_allclose(got_b, want_b, atol=1e-12)


def test_strict_shrinking_reports_what_it_cannot_follow():
    model = build(ReflectPadded)
    a, b = (torch.rand(9, 9, dtype=torch.float64) for _ in "ab")
    with pytest.raises(Unsupported, match="pad"):
        crop_rows(model, a, b, [(4, 4)], analyse(model), shrinking=True)
