"""Exact Jacobian rows of single fused pixels: the hover path's entry points.

``pixel_jacobians`` plans the model at the image's shape (``planning.plan``: the crop path where it
is verified exact, else the full image), then computes the rows on receptive-field crops
(``crops.py``), with shrinking windows and the replay of kept activations where those are verified
too. The names of the crop path's building blocks are re-exported here for their callers.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from .crops import SINGLE_THREAD_PIXELS, crop_batches, crop_rows, crop_windows, single_thread
from .field import analyse
from .methods import Method
from .planning import plan, record_windows
from .programs import MAX_PROGRAMS, run_windows
from .reference import full_rows
from .replay import ForwardRecord
from .state import as_tensor, pinning
from .verification import verify_replay, verify_shrinking

__all__ = ["MAX_PROGRAMS", "SINGLE_THREAD_PIXELS", "PixelJacobian", "as_tensor", "crop_batches", "crop_rows",
           "crop_windows", "pixel_jacobian", "pixel_jacobians", "record_windows", "run_windows", "single_thread"]


@dataclass
class PixelJacobian:
    """The Jacobian row of fused pixel (row, col): ``ja``, ``jb`` are H x W float32.

    ``window``: the pixel's receptive field clipped to the image, (top, bottom,
    left, right) with bottom/right exclusive (the whole image for non-local
    models). ``method``: ``Method.CROPS``, ``FULL_IMAGE`` or ``DENSE_CACHE`` (a service's
    cached whole-image result); ``reason`` says why a slower path was taken.
    """

    row: int
    col: int
    ja: np.ndarray
    jb: np.ndarray
    value: float
    window: tuple[int, int, int, int]
    method: Method
    reason: str | None = None

    def __post_init__(self):
        self.method = Method(self.method)


def _check_pixels(pixels, height: int, width: int) -> list[tuple[int, int]]:
    out = []
    for r, c in pixels:
        r, c = int(r), int(c)
        if not (0 <= r < height and 0 <= c < width):
            raise IndexError(f"pixel ({r}, {c}) is outside the {height} x {width} image")
        out.append((r, c))
    return out


@pinning
def pixel_jacobians(model: nn.Module, a: np.ndarray, b: np.ndarray, pixels, method: Method | str = "auto",
                    record: ForwardRecord | None = None, shrinking: bool | None = None,
                    new_programs: bool = True) -> list[PixelJacobian]:
    """Exact Jacobian rows of many fused pixels at once.

    Args:
        model: a fusion model, ``forward(a, b)`` on (N, 1, H, W) tensors.
        a, b: H x W arrays or tensors (MRI, PET) in [0, 1].
        pixels: iterable of (row, col).
        method: "auto" (``Method.CROPS`` where verified exact, else ``Method.FULL_IMAGE``),
            ``Method.CROPS`` (skip verification: the caller vouches) or ``Method.FULL_IMAGE``.
        record: ``record_forward(model, a, b)``, the kept full-image activations:
            the crop path then runs only the backward half ("auto" uses it where
            ``verify_replay`` passed for this model and shape).
        shrinking: for the crop path: shrinking windows (True), whole crops (False) or
            shrinking windows where verified (None).
        new_programs: False records no window program (a server's request does no one-off work).
    Returns:
        one ``PixelJacobian`` per pixel, in order.
    """
    ta, tb = as_tensor(a, "a", model), as_tensor(b, "b", model)
    if ta.shape != tb.shape:
        raise ValueError(f"a and b differ in shape: {tuple(ta.shape)} vs {tuple(tb.shape)}")
    height, width = ta.shape
    pixels = _check_pixels(pixels, height, width)
    if method == "auto":
        method, field, reason = plan(model, height, width)
        vouched = False
    else:
        method, reason, vouched = _requested(method), None, True
        if method == Method.CROPS:
            field = analyse(model)
        else:
            field, reason = None, "requested"  # no probe: the full image needs no field
    if method == Method.CROPS:
        if record is not None and not (vouched or verify_replay(model, height, width)):
            record = None
        fallback = shrinking is None  # where verified; a batch they cannot follow runs as whole crops
        if fallback:
            shrinking = field.stride == 1 and verify_shrinking(model, height, width)
        rows_a, rows_b, values = crop_rows(model, ta, tb, pixels, field, shrinking, record=record,
                                           new_programs=new_programs, fallback=fallback)
    else:
        rows_a, rows_b, values = full_rows(model, ta, tb, pixels)
    rows_a = rows_a.detach().to("cpu", torch.float32).numpy()
    rows_b = rows_b.detach().to("cpu", torch.float32).numpy()
    values = values.detach().to("cpu", torch.float64).numpy()
    results = []
    for k, (r, c) in enumerate(pixels):
        window = field.box(r, c, height, width) if method == Method.CROPS else (0, height, 0, width)
        results.append(PixelJacobian(r, c, rows_a[k], rows_b[k], float(values[k]), window, method, reason))
    return results


def _requested(name) -> Method:
    """The ``Method`` a caller named for a hover: crops or the full image."""
    try:
        method = Method(name)
    except ValueError:
        method = None
    if method not in (Method.CROPS, Method.FULL_IMAGE):
        raise ValueError(f"unknown hover method {name!r}; use 'auto', {Method.CROPS.value!r} or "
                         f"{Method.FULL_IMAGE.value!r}")
    return method


def pixel_jacobian(model: nn.Module, a: np.ndarray, b: np.ndarray, row: int, col: int
                   ) -> tuple[np.ndarray, np.ndarray]:
    """dF(row, col)/da and dF(row, col)/db: two H x W float32 arrays, exact.

    Example:
        >>> ja, jb = pixel_jacobian(model, a, b, row=128, col=100)   # a, b: 256 x 256
        >>> ja.shape
        (256, 256)
    """
    result = pixel_jacobians(model, a, b, [(row, col)])[0]
    return result.ja, result.jb
