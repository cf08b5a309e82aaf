"""``compare_with_autograd``: given Jacobian rows against full-image autograd, one backward pass when they agree."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import fusion
from fusion.saliency.reference import full_rows
from fusion.saliency.verification import compare_with_autograd


class Scaled(nn.Module):
    """A 3 x 3 blur of a + b, each output pixel times ``scale`` (rows of very different sizes)."""

    def __init__(self, scale: torch.Tensor):
        super().__init__()
        self.conv = nn.Conv2d(2, 1, 3, padding=1, bias=False)
        with torch.no_grad():
            self.conv.weight.copy_(torch.linspace(0.1, 1.0, 18).reshape(1, 2, 3, 3))
        self.register_buffer("scale", scale)

    def forward(self, a, b):
        return torch.tanh(self.conv(torch.cat([a, b], 1))) * self.scale


def forwards(model: nn.Module) -> list:
    calls = []
    model.register_forward_hook(lambda *_: calls.append(1))
    return calls


def exact(model, a, b, pixels):
    rows_a, rows_b, _ = full_rows(model, a, b, pixels)
    return {p: (rows_a[k].detach().numpy().copy(), rows_b[k].detach().numpy().copy()) for k, p in enumerate(pixels)}


@pytest.mark.parametrize("name", fusion.list_models())
def test_exact_rows_agree_in_one_backward_pass(name):
    model = fusion.create_model(name).eval()
    gen = torch.Generator().manual_seed(0)
    a, b = torch.rand(24, 20, generator=gen), torch.rand(24, 20, generator=gen)
    pixels = [(0, 0), (0, 19), (23, 0), (23, 19), (12, 10), (5, 0)]
    rows = exact(model, a, b, pixels)
    calls = forwards(model)
    assert compare_with_autograd(model, a, b, pixels, lambda r, c: rows[(r, c)], "test") is None
    assert len(calls) == 1


@pytest.mark.parametrize("bad", [(0, 0), (0, 15), (11, 7), (15, 15)])
def test_a_wrong_row_is_found_and_named_even_beside_rows_a_million_times_larger(bad):
    scale = torch.ones(1, 1, 16, 16)
    scale[0, 0, 0, 0] = 1e-6  # pixel (0, 0)'s row is a millionth of the others
    model = Scaled(scale)
    gen = torch.Generator().manual_seed(1)
    a, b = torch.rand(16, 16, generator=gen), torch.rand(16, 16, generator=gen)
    pixels = [(0, 0), (0, 15), (11, 7), (15, 15)]
    rows = exact(model, a, b, pixels)
    ra, rb = rows[bad]
    k = np.unravel_index(np.abs(rb).argmax(), rb.shape)
    rb[k] += 1e-3 * np.abs(rb).max()  # one entry off by 1e-3 of its row's largest value
    message = compare_with_autograd(model, a, b, pixels, lambda r, c: rows[(r, c)], "test")
    assert message is not None and f"pixel {bad}" in message and "test Jacobian" in message


def test_rows_of_another_pixel_disagree():
    model = Scaled(torch.ones(1, 1, 16, 16))
    a, b = torch.rand(16, 16), torch.rand(16, 16)
    rows = exact(model, a, b, [(3, 3), (9, 9)])
    swapped = {(3, 3): rows[(9, 9)], (9, 9): rows[(3, 3)]}
    assert "pixel (3, 3)" in compare_with_autograd(model, a, b, [(3, 3), (9, 9)], lambda r, c: swapped[(r, c)], "x")
