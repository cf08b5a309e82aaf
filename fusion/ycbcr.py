"""Colour PET and SPECT: ITU-R BT.601 full-range YCbCr on the [0, 1] scale.

MRI-PET fusion papers fuse luminance and keep the functional image's colour: the
PET's RGB becomes YCbCr, the networks fuse Y(MRI) with Y(PET), and PET's Cb/Cr are
put back. The conversion is JPEG's (and Pillow's "YCbCr" mode), with every value
divided by 255, so Cb and Cr are centred on 0.5 (JPEG's 8-bit Cb, Cr, centred on 128, are
255 Cb + 0.5 and 255 Cr + 0.5: the same within 8-bit rounding):

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


def rgb_with_y(y: np.ndarray, chroma: np.ndarray) -> np.ndarray:
    """(H, W) luminance and (H, W, 2) Cb/Cr in [0, 1] -> (H, W, 3) float32 RGB in [0, 1] whose Y is exactly ``y``.

    Where (y, Cb, Cr) lies outside the RGB cube (a bright Y under a saturated colour),
    Cb and Cr are moved towards grey (0.5) by the smallest factor that brings every
    channel into [0, 1], so the hue is kept and the luminance is never changed (plain
    ``ycbcr_to_rgb`` clips the channels instead, which changes Y). Elsewhere the result
    equals ``ycbcr_to_rgb``.

    >>> y = np.array([[0.9]], dtype=np.float32)
    >>> red = rgb_to_ycbcr(np.array([[[1.0, 0.0, 0.0]]]))[..., 1:]
    >>> round(float(luminance(rgb_with_y(y, red))[0, 0]), 6)
    0.9
    """
    y = np.clip(np.asarray(y, np.float64), 0.0, 1.0)
    chroma = np.asarray(chroma, np.float64)
    if y.ndim != 2 or chroma.shape != (*y.shape, 2):
        raise ValueError(f"y must be (H, W) and chroma (H, W, 2), got {y.shape} and {chroma.shape}")
    offset = (chroma - 0.5) @ YCBCR_TO_RGB[:, 1:].T  # (H, W, 3): what the chroma adds to each channel
    with np.errstate(divide="ignore", invalid="ignore"):
        room = np.where(offset > 0, (1.0 - y[..., None]) / offset, np.where(offset < 0, -y[..., None] / offset, np.inf))
    scale = np.clip(room.min(axis=-1, initial=1.0), 0.0, 1.0)
    return np.clip(y[..., None] + scale[..., None] * offset, 0.0, 1.0).astype(np.float32)
