"""Colour PET and SPECT: ITU-R BT.601 full-range YCbCr on the [0, 1] scale.

MRI-PET fusion papers fuse luminance and keep the functional image's colour: the
PET's RGB becomes YCbCr, the networks fuse Y(MRI) with Y(PET), and PET's Cb/Cr are
put back. The conversion is JPEG's (and Pillow's "YCbCr" mode), with every value
divided by 255, so Cb and Cr are centred on 0.5:

    Y  =       0.299    R + 0.587    G + 0.114    B
    Cb = 0.5 - 0.168736 R - 0.331264 G + 0.5      B
    Cr = 0.5 + 0.5      R - 0.418688 G - 0.081312 B

Example:
    >>> import numpy as np
    >>> red = np.array([[[1.0, 0.0, 0.0]]], dtype=np.float32)
    >>> [round(float(v), 4) for v in rgb_to_ycbcr(red)[0, 0]]
    [0.299, 0.3313, 1.0]
    >>> np.allclose(ycbcr_to_rgb(rgb_to_ycbcr(red)), red, atol=1e-6)
    True
"""
from __future__ import annotations

import numpy as np

#: Rows: Y, Cb, Cr; columns: R, G, B (the offsets 0, 0.5, 0.5 are added after).
RGB_TO_YCBCR = np.array([[0.299, 0.587, 0.114],
                         [-0.168736, -0.331264, 0.5],
                         [0.5, -0.418688, -0.081312]])
YCBCR_TO_RGB = np.linalg.inv(RGB_TO_YCBCR)
_OFFSET = np.array([0.0, 0.5, 0.5])


def _channels_last(array: np.ndarray, name: str) -> np.ndarray:
    array = np.asarray(array)
    if array.ndim != 3 or array.shape[-1] != 3:
        raise ValueError(f"{name} must be an (H, W, 3) array, got shape {array.shape}")
    return array.astype(np.float64)


def rgb_to_ycbcr(rgb: np.ndarray) -> np.ndarray:
    """(H, W, 3) RGB in [0, 1] -> (H, W, 3) float32 Y, Cb, Cr in [0, 1] (BT.601 full range)."""
    return (_channels_last(rgb, "rgb") @ RGB_TO_YCBCR.T + _OFFSET).astype(np.float32)


def ycbcr_to_rgb(ycbcr: np.ndarray) -> np.ndarray:
    """(H, W, 3) Y, Cb, Cr in [0, 1] -> (H, W, 3) float32 RGB, clipped to [0, 1] (the inverse of ``rgb_to_ycbcr``)."""
    rgb = (_channels_last(ycbcr, "ycbcr") - _OFFSET) @ YCBCR_TO_RGB.T
    return np.clip(rgb, 0.0, 1.0).astype(np.float32)


def luminance(rgb: np.ndarray) -> np.ndarray:
    """(H, W, 3) RGB in [0, 1] -> (H, W) float32 Y."""
    return (_channels_last(rgb, "rgb") @ RGB_TO_YCBCR[0]).astype(np.float32)
