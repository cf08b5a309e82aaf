"""The whole-image result of one model on one pair (``DenseJacobian``) and its banded rows (``unband``).

Banded storage: ``band_a[r, c, i, j] = dF(r, c)/da(r - up + i, c - left + j)``,
shape (H, W, rows, cols), zero outside the image. ``fusion.saliency.hdf5`` writes and reads it.
"""
from __future__ import annotations

from dataclasses import dataclass
from dataclasses import field as dataclass_field

import numpy as np
from torch import nn

from .dense_paths import MAP_NAMES, share
from .field import Field
from .methods import Method
from .pixel import pixel_jacobians

__all__ = ["DenseJacobian", "unband"]


@dataclass
class DenseJacobian:
    """Whole-image saliency of one model on one pair; every map is H x W float32.

    ``guidance_a/_b``: the Jacobian diagonal dF(p)/da(p), dF(p)/db(p).
    ``influence_a/_b``: sum over q of |dF(p)/da(q)| (likewise for b).
    ``band_a/_b``: (H, W, rows, cols) banded Jacobian (see the module docstring) or None.
    ``method``: ``Method.CROPS``, ``COLOURED`` or ``FULL_IMAGE``; ``reason``: why the slower path, if taken.
    """

    guidance_a: np.ndarray
    guidance_b: np.ndarray
    influence_a: np.ndarray
    influence_b: np.ndarray
    fused: np.ndarray
    method: Method
    field: Field
    band_a: np.ndarray | None = None
    band_b: np.ndarray | None = None
    reason: str | None = None
    meta: dict = dataclass_field(default_factory=dict)
    model: nn.Module | None = dataclass_field(default=None, repr=False, compare=False)
    inputs: tuple[np.ndarray, np.ndarray] | None = dataclass_field(default=None, repr=False, compare=False)

    def __post_init__(self):
        self.method = Method(self.method)

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
