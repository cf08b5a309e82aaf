"""The whole Jacobian of a fused image (``dense_jacobian``) and its result type (``DenseJacobian``).

The paths themselves (coloured backward passes, shrinking-window crops, one backward pass
per pixel) are in ``dense_paths``; ``dense_method`` picks one, as ``method="auto"`` does.

Banded storage: ``band_a[r, c, i, j] = dF(r, c)/da(r - up + i, c - left + j)``,
shape (H, W, rows, cols), zero outside the image.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from dataclasses import field as dataclass_field

import numpy as np
import torch
from torch import nn

from .dense_paths import (
    MAP_NAMES,
    MEMORY_BUDGET_BYTES,
    MEMORY_BUDGET_ENV,
    Cancelled,
    colour_order,
    compute,
    crops_apply,
    memory_budget_bytes,
    reporter,
    share,
)
from .pixel import as_tensor, pixel_jacobians
from .receptive_field import (
    VERIFY_RTOL,
    VERIFY_RTOL_FLOAT32,
    Field,
    analyse,
    corner_pixels,
    full_rows,
    plan,
)

__all__ = ["MAP_NAMES", "MEMORY_BUDGET_BYTES", "MEMORY_BUDGET_ENV", "Cancelled", "DenseJacobian", "colour_order",
           "check_rows", "compare_rows", "dense_jacobian", "dense_method", "memory_budget_bytes", "share", "unband"]
#: What ``dense_jacobian``'s ``method`` accepts besides "auto".
METHODS = ("crops", "coloured", "full-image")


@dataclass
class DenseJacobian:
    """Whole-image saliency of one model on one pair; every map is H x W float32.

    ``guidance_a/_b``: the Jacobian diagonal dF(p)/da(p), dF(p)/db(p).
    ``influence_a/_b``: sum over q of |dF(p)/da(q)| (likewise for b).
    ``band_a/_b``: (H, W, rows, cols) banded Jacobian (see the module docstring) or None.
    ``method``: "crops", "coloured" or "full-image"; ``reason``: why the slower path, if taken.
    """

    guidance_a: np.ndarray
    guidance_b: np.ndarray
    influence_a: np.ndarray
    influence_b: np.ndarray
    fused: np.ndarray
    method: str
    field: Field
    band_a: np.ndarray | None = None
    band_b: np.ndarray | None = None
    reason: str | None = None
    meta: dict = dataclass_field(default_factory=dict)
    model: nn.Module | None = dataclass_field(default=None, repr=False, compare=False)
    inputs: tuple[np.ndarray, np.ndarray] | None = dataclass_field(default=None, repr=False, compare=False)

    @property
    def shape(self) -> tuple[int, int]:
        return self.guidance_a.shape

    @property
    def mri_share(self) -> np.ndarray:
        """influence_a / (influence_a + influence_b), 0.5 where both are 0."""
        return share(self.influence_a, self.influence_b)

    @property
    def receptive_field(self) -> int:
        """Side of the receptive field (0 for a non-local model)."""
        return self.field.size if self.field.local else 0

    def maps(self) -> dict[str, np.ndarray]:
        return {name: getattr(self, name) for name in MAP_NAMES}

    def row(self, row: int, col: int) -> tuple[np.ndarray, np.ndarray]:
        """dF(row, col)/da and /db as two H x W float32 arrays (equal to ``pixel_jacobian``)."""
        height, width = self.shape
        if not (0 <= row < height and 0 <= col < width):
            raise IndexError(f"pixel ({row}, {col}) is outside the {height} x {width} image")
        if self.band_a is None:
            if self.model is None or self.inputs is None:
                raise ValueError("this DenseJacobian kept no banded Jacobian (keep_band=False or loaded "
                                 "without it) and no model: compute the row with pixel_jacobian instead")
            result = pixel_jacobians(self.model, *self.inputs, [(row, col)])[0]
            return result.ja, result.jb
        return unband(self.band_a[row, col], self.band_b[row, col], self.field, row, col, height, width)

    def to_hdf5(self, path) -> None:
        """Write maps, banded Jacobian and provenance to an HDF5 file (see ``fusion.saliency.hdf5``)."""
        from .hdf5 import save_hdf5

        save_hdf5(self, path)

    @classmethod
    def from_hdf5(cls, path) -> DenseJacobian:
        from .hdf5 import load_hdf5

        return load_hdf5(path)


def unband(band_a: np.ndarray, band_b: np.ndarray, field: Field, row: int, col: int, height: int,
           width: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel (row, col)'s (rows, cols) band entries -> its two H x W Jacobian rows (zero outside its field)."""
    top, bottom, left, right = field.box(row, col, height, width)
    i0, j0 = top - (row - field.up), left - (col - field.left)
    out = []
    for band in (band_a, band_b):
        full = np.zeros((height, width), np.float32)
        full[top:bottom, left:right] = band[i0:i0 + bottom - top, j0:j0 + right - left]
        out.append(full)
    return out[0], out[1]


def check_rows(model: nn.Module, a: torch.Tensor, b: torch.Tensor, result: DenseJacobian,
               pixels: list[tuple[int, int]] | None = None) -> str | None:
    """Compare the band rows of ``pixels`` (default: the corners and the centre) with full-image autograd
    on the (H, W) tensors ``a``, ``b``; None when they agree, else what disagrees."""
    height, width = a.shape
    pixels = corner_pixels(height, width, extra=0) if pixels is None else pixels
    return compare_rows(model, a, b, pixels, result.row, result.method)


def compare_rows(model: nn.Module, a: torch.Tensor, b: torch.Tensor, pixels: list[tuple[int, int]],
                 row: Callable[[int, int], tuple[np.ndarray, np.ndarray]], method: str) -> str | None:
    """Compare ``row(r, c)`` (two H x W arrays) at ``pixels`` with full-image autograd on the (H, W) tensors
    ``a``, ``b``; None when they agree, else what disagrees."""
    want_a, want_b, _ = full_rows(model, a, b, pixels)
    rtol = VERIFY_RTOL if a.dtype == torch.float64 else VERIFY_RTOL_FLOAT32
    for k, (r, c) in enumerate(pixels):
        for want, have in zip((want_a[k], want_b[k]), row(r, c), strict=True):
            want = want.detach().cpu().double().numpy()
            scale = max(np.abs(want).max(), np.abs(have).max(), 1e-30)
            err = np.abs(want - have).max() / scale
            if err > max(rtol, 1e-6):
                return (f"the {method} Jacobian disagrees with full-image autograd at pixel ({r}, {c}) "
                        f"(relative error {err:.2g})")
    return None


def dense_method(model: nn.Module, height: int, width: int) -> tuple[str, Field, str | None]:
    """The path ``dense_jacobian(method="auto")`` takes at this size: ("crops", "coloured" or "full-image",
    the model's field, why the full image when it is taken)."""
    path, f, reason = plan(model, height, width)
    if path != "crop":
        return "full-image", f, reason
    return ("crops" if crops_apply(model, height, width) else "coloured"), f, None


def dense_jacobian(model: nn.Module, a: np.ndarray, b: np.ndarray, progress: Callable | None = None,
                   cancel=None, keep_band: bool = True, method: str = "auto",
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
        method: "auto" (``dense_method``: on the CPU "crops" where shrinking windows and their replay
            are verified exact, else "coloured" where the crop path is, else "full-image"), "crops",
            "coloured" or "full-image".
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
        f, reason = analyse(model), "requested" if method == "full-image" else None
    else:
        raise ValueError(f"unknown method {method!r}; use 'auto', 'crops', 'coloured' or 'full-image'")
    f = f.clipped(height, width) if method != "full-image" else f
    method, maps, bands, fused = compute(method, model, ta, tb, f, reporter(progress), cancel, keep_band,
                                         memory_budget)
    result = DenseJacobian(**maps, fused=fused, method=method, field=f, reason=reason,
                           band_a=bands[0] if bands else None, band_b=bands[1] if bands else None,
                           model=model, inputs=(np.asarray(a), np.asarray(b)))
    if keep_band and bands:
        mismatch = check_rows(model, ta, tb, result)
        if mismatch is not None:  # never serve a wrong answer: redo it the slow, exact way
            result = dense_jacobian(model, a, b, progress, cancel, keep_band, "full-image", memory_budget)
            result.reason = mismatch
    return result
