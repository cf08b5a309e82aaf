"""Fusion quality metrics on the 0-255 scale: input checks, EN, SD, SF, AG, MI and SCD (numpy only).

Every function takes H x W arrays with values in [0, 1] (the library's images) and
works on ``255 * x`` in float64: not rounded, except EN and MI, which count grey
levels and so round to the integers 0..255 first (as an 8-bit file would hold them).
"""
from __future__ import annotations

import numpy as np

from ..errors import InvalidInput

#: The scale every metric works on (an 8-bit image's range).
PEAK = 255.0
#: Grey levels of the histograms of EN and MI.
LEVELS = 256


def as_image(x, name: str = "image", min_side: int = 2) -> np.ndarray:
    """One H x W image in [0, 1] -> float64 on the 0-255 scale.

    Raises InvalidInput for anything else: not 2-D, smaller than ``min_side`` on a side,
    not numeric, NaN or infinite values, values outside [0, 1].
    """
    try:
        arr = np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError):
        raise InvalidInput(f"{name}: not a numeric array") from None
    if arr.ndim != 2:
        raise InvalidInput(f"{name}: expected an H x W (2-D) image, got shape {arr.shape}")
    if min(arr.shape) < min_side:
        raise InvalidInput(f"{name}: {arr.shape[0]} x {arr.shape[1]} is too small; this metric needs at least "
                           f"{min_side} x {min_side} pixels")
    if not np.isfinite(arr).all():
        raise InvalidInput(f"{name}: contains NaN or infinite values")
    if arr.min() < 0.0 or arr.max() > 1.0:
        raise InvalidInput(f"{name}: values must lie in [0, 1] (got {arr.min():.4g} to {arr.max():.4g}); "
                           "clip first, e.g. numpy.clip(x, 0, 1)")
    return arr * PEAK


def as_images(fused, a, b, min_side: int = 2) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``as_image`` of the fused image and both sources, which must have one shape."""
    out = (as_image(fused, "fused image", min_side), as_image(a, "source A (MRI)", min_side),
           as_image(b, "source B (PET)", min_side))
    shapes = {arr.shape for arr in out}
    if len(shapes) != 1:
        raise InvalidInput(f"the fused image and the two sources differ in shape: {out[0].shape}, {out[1].shape}, "
                           f"{out[2].shape}")
    return out


def grey_levels(x255: np.ndarray) -> np.ndarray:
    """Round a 0-255 float image to integer grey levels 0..255 (int64)."""
    return np.clip(np.rint(x255), 0, LEVELS - 1).astype(np.int64)


def entropy(fused) -> float:
    """EN: Shannon entropy of the fused image, in bits.

    Roberts, van Aardt and Ahmed 2008 (J. Appl. Remote Sens. 2, 023522).
    EN = -sum_l p_l log2 p_l over the 256-bin histogram of the fused image rounded to the
    integers 0..255 (p_l: fraction of pixels at level l; 0 log 0 = 0). Range [0, 8]; higher is better.

    >>> entropy(np.tile([0.0, 1.0], (4, 4)))  # two levels, equally often: one bit
    1.0
    """
    levels = grey_levels(as_image(fused, "fused image", 1)).ravel()
    p = np.bincount(levels, minlength=LEVELS) / levels.size
    p = p[p > 0]
    return float(-(p * np.log2(p)).sum()) + 0.0  # + 0.0: -0.0 for a constant image becomes 0.0


def standard_deviation(fused) -> float:
    """SD: population standard deviation (divisor N) of the fused image on the 0-255 scale.

    Rao 1997 (Measurement 21, 91-101). SD = sqrt(mean((F - mean F)^2)). Higher is better (contrast).
    """
    return float(np.std(as_image(fused, "fused image", 1)))


def spatial_frequency(fused) -> float:
    """SF: spatial frequency of the fused image on the 0-255 scale.

    Eskicioglu and Fisher 1995 (IEEE Trans. Commun. 43, 2959-2965).
    SF = sqrt(RF^2 + CF^2), RF^2 = mean over the H x (W-1) horizontal neighbours of
    (F[i, j] - F[i, j-1])^2, CF^2 = mean over the (H-1) x W vertical neighbours of
    (F[i, j] - F[i-1, j])^2. Higher is better (detail).
    """
    f = as_image(fused, "fused image")
    return float(np.sqrt(np.mean(np.diff(f, axis=1) ** 2) + np.mean(np.diff(f, axis=0) ** 2)))


def average_gradient(fused) -> float:
    """AG: average gradient of the fused image on the 0-255 scale.

    Cui et al. 2015 (Opt. Commun. 341, 199-209). AG = mean over all H x W pixels of
    sqrt((Gx^2 + Gy^2) / 2), with (Gy, Gx) = ``numpy.gradient(F)``: central differences
    inside, one-sided differences at the border. Higher is better (sharpness).
    """
    gy, gx = np.gradient(as_image(fused, "fused image"))
    return float(np.mean(np.sqrt((gx ** 2 + gy ** 2) / 2.0)))


def mutual_information_pair(x, y) -> float:
    """MI(X, Y) in nats of two images' grey levels (rounded to 0..255, on the 0-255 scale).

    MI = sum_{u,v} p(u, v) ln(p(u, v) / (p(u) p(v))) over the 256 x 256 joint histogram;
    the same number as ``sklearn.metrics.mutual_info_score`` of the two flattened level images.
    """
    u = grey_levels(as_image(x, "first image", 1)).ravel()
    v = grey_levels(as_image(y, "second image", 1)).ravel()
    if u.size != v.size:
        raise InvalidInput(f"the two images differ in size: {np.shape(x)} and {np.shape(y)}")
    joint = np.bincount(u * LEVELS + v, minlength=LEVELS * LEVELS).reshape(LEVELS, LEVELS) / u.size
    pu, pv = joint.sum(axis=1), joint.sum(axis=0)
    nz = joint > 0
    return float(max((joint[nz] * np.log(joint[nz] / np.outer(pu, pv)[nz])).sum(), 0.0))


def mutual_information(fused, a, b) -> float:
    """MI: MI(F, A) + MI(F, B) in nats (``mutual_information_pair``).

    Qu, Zhang and Yan 2002 (Electron. Lett. 38, 313-315), with the natural log of the most used
    Python evaluators (``sklearn.metrics.mutual_info_score``); divide by ln 2 for bits. Higher is better.
    """
    f, ia, ib = as_images(fused, a, b, 1)
    return mutual_information_pair(f / PEAK, ia / PEAK) + mutual_information_pair(f / PEAK, ib / PEAK)


def correlation(x: np.ndarray, y: np.ndarray) -> float:
    """Pearson correlation of two arrays over all pixels; NaN when either is constant (undefined)."""
    dx, dy = x - x.mean(), y - y.mean()
    den = np.sqrt((dx * dx).sum() * (dy * dy).sum())
    return float((dx * dy).sum() / den) if den > 0 else float("nan")


def scd(fused, a, b) -> float:
    """SCD: the sum of the correlations of differences, corr(F - B, A) + corr(F - A, B).

    Aslantas and Bendes 2015 (AEU Int. J. Electron. Commun. 69, 1890-1896). Pearson
    correlations over all pixels (independent of the scale). Range [-2, 2]; higher is better.
    NaN where a correlation is undefined: A or B constant, or F - B or F - A constant
    (for instance F = A + constant).
    """
    f, ia, ib = as_images(fused, a, b)
    return correlation(f - ib, ia) + correlation(f - ia, ib)
