"""The whole Jacobian of a fused image (``dense_jacobian``, returning a ``result.DenseJacobian``).

The paths themselves (coloured backward passes, shrinking-window crops, one backward pass
per pixel) are in ``dense_paths``, on the kept forward graph of ``backward``; ``dense_method``
picks one, as ``method="auto"`` does.

The result type and its banded storage are in ``result``.
"""
from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch import nn

from .backward import MEMORY_BUDGET_BYTES, MEMORY_BUDGET_ENV, memory_budget_bytes
from .dense_paths import MAP_NAMES, Cancelled, colour_order, compute, crops_apply, reporter, share
from .field import Field, analyse
from .methods import Method
from .planning import plan
from .reference import corner_pixels
from .result import DenseJacobian
from .state import as_tensor
from .verification import compare_with_autograd

__all__ = ["MAP_NAMES", "MEMORY_BUDGET_BYTES", "MEMORY_BUDGET_ENV", "Cancelled", "colour_order", "check_rows",
           "dense_jacobian", "dense_method", "memory_budget_bytes", "share"]
#: What ``dense_jacobian``'s ``method`` accepts besides "auto".
METHODS = (Method.CROPS, Method.COLOURED, Method.FULL_IMAGE)


def check_rows(model: nn.Module, a: torch.Tensor, b: torch.Tensor, result: DenseJacobian,
               pixels: list[tuple[int, int]] | None = None) -> str | None:
    """Compare the band rows of ``pixels`` (default: the corners and the centre) with full-image autograd
    on the (H, W) tensors ``a``, ``b`` (``compare_with_autograd``: one backward pass); None when they
    agree, else what disagrees."""
    height, width = a.shape
    pixels = corner_pixels(height, width, extra=0) if pixels is None else pixels
    return compare_with_autograd(model, a, b, pixels, result.row, result.method)


def dense_method(model: nn.Module, height: int, width: int) -> tuple[Method, Field, str | None]:
    """The path ``dense_jacobian(method="auto")`` takes at this size: (``Method.CROPS``, ``COLOURED`` or
    ``FULL_IMAGE``, the model's field, why the full image when it is taken)."""
    path, f, reason = plan(model, height, width)
    if path != Method.CROPS:
        return Method.FULL_IMAGE, f, reason
    return (Method.CROPS if crops_apply(model, height, width) else Method.COLOURED), f, None


def dense_jacobian(model: nn.Module, a: np.ndarray, b: np.ndarray, progress: Callable | None = None,
                   cancel=None, keep_band: bool = True, method: Method | str = "auto",
                   memory_budget: int | None = None) -> DenseJacobian:
    """The whole Jacobian of ``model`` on the pair (a, b): guidance, influence and banded rows.

    Args:
        model: a fusion model, ``forward(a, b)`` on (N, 1, H, W) tensors.
        a, b: H x W arrays in [0, 1].
        progress: ``progress(done, total, preview)`` (or ``progress(done, total)``) after each
            chunk; ``preview`` maps every name in ``MAP_NAMES`` to an H x W array, NaN where
            not yet known.
        cancel: a callable returning True, or a ``threading.Event``; checked between chunks,
            raises ``Cancelled``.
        keep_band: keep the (H, W, rows, cols) banded Jacobian; without it ``.row`` recomputes
            rows with ``pixel_jacobian`` on the kept model.
        method: "auto" (``dense_method``: on the CPU ``Method.CROPS`` where shrinking windows and their
            replay are verified exact, else ``COLOURED`` where the crop path is, else ``FULL_IMAGE``),
            ``Method.CROPS``, ``COLOURED`` or ``FULL_IMAGE``.
        memory_budget: bytes one chunk of batched backward passes may use (None:
            ``$FUSION_DENSE_MEMORY_MB`` or 1 GiB).
    Returns:
        ``DenseJacobian`` (``.method`` says which path produced it).
    """
    ta, tb = as_tensor(a, "a", model), as_tensor(b, "b", model)
    if ta.shape != tb.shape:
        raise ValueError(f"a and b differ in shape: {tuple(ta.shape)} vs {tuple(tb.shape)}")
    height, width = ta.shape
    if method == "auto":
        method, f, reason = dense_method(model, height, width)
    elif method in METHODS:
        method = Method(method)
        f, reason = analyse(model), "requested" if method == Method.FULL_IMAGE else None
    else:
        raise ValueError(f"unknown method {method!r}; use 'auto', "
                         + ", ".join(repr(m.value) for m in METHODS))
    f = f.clipped(height, width) if method != Method.FULL_IMAGE else f
    method, maps, bands, fused = compute(method, model, ta, tb, f, reporter(progress), cancel, keep_band,
                                         memory_budget)
    result = DenseJacobian(**maps, fused=fused, method=method, field=f, reason=reason,
                           band_a=bands[0] if bands else None, band_b=bands[1] if bands else None,
                           model=model, inputs=(np.asarray(a), np.asarray(b)))
    if keep_band and bands:
        mismatch = check_rows(model, ta, tb, result)
        if mismatch is not None:  # never serve a wrong answer: redo it the slow, exact way
            result = dense_jacobian(model, a, b, progress, cancel, keep_band, Method.FULL_IMAGE, memory_budget)
            result.reason = mismatch
    return result
