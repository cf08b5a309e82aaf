"""Fusion quality metrics against the two sources: VIF, Qabf (numpy/scipy), SSIM (scikit-image) and PSNR.

Inputs as in ``fusion.metrics.image``: H x W arrays in [0, 1], worked on as ``255 * x`` (float64, not rounded).
"""
from __future__ import annotations

import numpy as np
from scipy.ndimage import correlate1d
from scipy.signal import convolve2d

from .image import PEAK, as_images

#: VIF: variance of the visual noise on the 0-255 scale, and the scales of the pixel-domain VIF.
VIF_NOISE_VAR = 2.0
VIF_SCALES = 4
#: Smallest side VIF's four scales of "valid" filtering and halving leave something of.
VIF_MIN_SIDE = 41
_TINY = 1e-10
#: Qabf (Xydeas and Petrovic 2000): sigmoid constants of edge strength (g) and orientation (a), weight exponent L.
QABF_G = (0.9994, -15.0, 0.5)
QABF_A = (0.9879, -22.0, 0.8)
QABF_L = 1.0
#: Sobel kernels (3 x 3): horizontal derivative, vertical derivative.
SOBEL_X = np.array([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]])
SOBEL_Y = SOBEL_X.T.copy()
#: SSIM: scikit-image's ``structural_similarity`` defaults (7 x 7 uniform window, K1 0.01, K2 0.03) at this range.
SSIM_MIN_SIDE = 7


def gaussian_window_1d(size: int) -> np.ndarray:
    """The 1-D factor of MATLAB's ``fspecial('gaussian', size, size / 5)`` (normalised to sum 1)."""
    x = np.arange(size) - (size - 1) / 2.0
    w = np.exp(-(x ** 2) / (2.0 * (size / 5.0) ** 2))
    return w / w.sum()


def filter_valid(x: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Separable filtering by the outer product of ``w`` with itself, keeping only the 'valid' part
    (pixels whose window lies inside the image), like MATLAB's ``filter2(w' * w, x, 'valid')``."""
    half = len(w) // 2
    out = correlate1d(correlate1d(x, w, axis=0, mode="constant"), w, axis=1, mode="constant")
    return out[half:x.shape[0] - half, half:x.shape[1] - half]


def vif_pair(ref: np.ndarray, dist: np.ndarray) -> float:
    """Pixel-domain multi-scale VIF of ``dist`` against the reference ``ref`` (0-255 scale arrays).

    Sheikh and Bovik 2006 (IEEE Trans. Image Process. 15, 430-444), their ``vifp_mscale``:
    at scale s = 1..4 a Gaussian window of N = 2^(5-s) + 1 pixels and sigma N / 5; from scale 2
    on, both images are first filtered with it ('valid') and halved ([::2, ::2]). Local
    statistics mu, sigma^2, sigma_12 by the window ('valid'), g = sigma_12 / sigma_1^2 and
    sigma_v^2 = sigma_2^2 - g sigma_12 (with the published guards for flat patches and g < 0), then
    VIF = sum log10(1 + g^2 sigma_1^2 / (sigma_v^2 + sigma_n^2)) / sum log10(1 + sigma_1^2 / sigma_n^2),
    sigma_n^2 = 2, sums over every scale and pixel. NaN when the reference has no variance
    anywhere (the denominator is 0; the popular Python ports return 1.0 there).
    """
    num = den = 0.0
    ref, dist = ref.astype(np.float64), dist.astype(np.float64)
    for scale in range(1, VIF_SCALES + 1):
        w = gaussian_window_1d(2 ** (VIF_SCALES - scale + 1) + 1)
        if scale > 1:
            ref, dist = filter_valid(ref, w)[::2, ::2], filter_valid(dist, w)[::2, ::2]
        mu1, mu2 = filter_valid(ref, w), filter_valid(dist, w)
        s1 = np.maximum(filter_valid(ref * ref, w) - mu1 * mu1, 0.0)
        s2 = np.maximum(filter_valid(dist * dist, w) - mu2 * mu2, 0.0)
        s12 = filter_valid(ref * dist, w) - mu1 * mu2
        g = s12 / (s1 + _TINY)
        sv = s2 - g * s12
        flat1, flat2 = s1 < _TINY, s2 < _TINY
        g[flat1], sv[flat1], s1[flat1] = 0.0, s2[flat1], 0.0
        g[flat2], sv[flat2] = 0.0, 0.0
        negative = g < 0
        sv[negative], g[negative] = s2[negative], 0.0
        sv = np.maximum(sv, _TINY)
        num += np.log10(1.0 + g * g * s1 / (sv + VIF_NOISE_VAR)).sum()
        den += np.log10(1.0 + s1 / VIF_NOISE_VAR).sum()
    return float(num / den) if den > 0 else float("nan")


def vif(fused, a, b) -> float:
    """VIF: VIF(A, F) + VIF(B, F), the multi-scale pixel-domain VIF of ``vif_pair`` with each source as
    reference; written with numpy/scipy. Needs at least 41 x 41 pixels. Higher is better (about 1 each for
    a perfect copy; above 1 for a contrast-enhanced one). NaN when a source is constant."""
    f, ia, ib = as_images(fused, a, b, VIF_MIN_SIDE)
    return vif_pair(ia, f) + vif_pair(ib, f)


def sobel(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Edge strength sqrt(sx^2 + sy^2) and orientation atan(sy / sx) (pi/2 where sx = 0), from 3 x 3 Sobel
    derivatives with zero padding ('same' size, as MATLAB's ``filter2``)."""
    sx, sy = convolve2d(x, SOBEL_X, mode="same"), convolve2d(x, SOBEL_Y, mode="same")
    strength = np.hypot(sx, sy)
    with np.errstate(divide="ignore", invalid="ignore"):
        angle = np.where(sx == 0, np.pi / 2, np.arctan(sy / np.where(sx == 0, 1.0, sx)))
    return strength, angle


def edge_preservation(g_src, a_src, g_f, a_f) -> np.ndarray:
    """Q^{SF}: per-pixel preservation of a source's edges in the fused image (Xydeas and Petrovic 2000).

    G = min(g_S, g_F) / max(g_S, g_F) (1 where both are 0), A = 1 - |a_S - a_F| / (pi / 2),
    Q = Gamma_g / (1 + exp(k_g (G - D_g))) * Gamma_a / (1 + exp(k_a (A - D_a))).
    """
    hi, lo = np.maximum(g_src, g_f), np.minimum(g_src, g_f)
    strength = np.divide(lo, hi, out=np.ones_like(hi), where=hi > 0)
    orientation = 1.0 - np.abs(a_src - a_f) / (np.pi / 2)
    (tg, kg, dg), (ta, ka, da) = QABF_G, QABF_A
    return tg / (1.0 + np.exp(kg * (strength - dg))) * ta / (1.0 + np.exp(ka * (orientation - da)))


def qabf(fused, a, b) -> float:
    """Qabf: gradient-based fusion performance of Xydeas and Petrovic 2000 (Electron. Lett. 36, 308-309).

    Qabf = sum(Q^{AF} w_A + Q^{BF} w_B) / sum(w_A + w_B), w = g^L with L = 1, edge strength and
    orientation from 3 x 3 Sobel derivatives (``sobel``), Q^{SF} from ``edge_preservation`` with the
    standard constants Gamma_g 0.9994, k_g -15, D_g 0.5, Gamma_a 0.9879, k_a -22, D_a 0.8; written with
    numpy/scipy. Range [0, 1) (F = A = B gives the formula's ceiling, about 0.975); higher is better.
    NaN when both sources have no edges at all (the weights sum to 0). The popular Python port sets
    G = g_F where g_S = g_F (instead of 1): that changes Q by under 0.001 where g_F > 0.
    """
    f, ia, ib = as_images(fused, a, b, 3)
    (ga, aa), (gb, ab), (gf, af) = sobel(ia), sobel(ib), sobel(f)
    wa, wb = ga ** QABF_L, gb ** QABF_L
    total = (wa + wb).sum()
    if total <= 0:
        return float("nan")
    return float((edge_preservation(ga, aa, gf, af) * wa + edge_preservation(gb, ab, gf, af) * wb).sum() / total)


def ssim_sum(fused, a, b) -> float:
    """SSIM: SSIM(F, A) + SSIM(F, B) by scikit-image's ``structural_similarity`` on the 0-255 scale with
    ``data_range=255`` and its defaults: 7 x 7 uniform window, K1 = 0.01, K2 = 0.03, sample covariance,
    mean over the pixels whose window lies inside. Wang et al. 2004 (IEEE Trans. Image Process. 13,
    600-612). Needs at least 7 x 7 pixels. Range [-2, 2]; higher is better."""
    try:
        from skimage.metrics import structural_similarity
    except ImportError as exc:
        raise ImportError("SSIM needs scikit-image: pip install scikit-image (see requirements.txt)") from exc
    f, ia, ib = as_images(fused, a, b, SSIM_MIN_SIDE)
    return float(structural_similarity(f, ia, data_range=PEAK) + structural_similarity(f, ib, data_range=PEAK))


def psnr(fused, a, b) -> float:
    """PSNR in dB: 10 log10(255^2 / ((MSE(F, A) + MSE(F, B)) / 2)), MSE on the 0-255 scale (not rounded).

    The convention of the fusion evaluators (one PSNR of the mean MSE, not the sum of two PSNRs);
    numpy. Higher is better; ``inf`` when F = A = B (no error).
    """
    f, ia, ib = as_images(fused, a, b)
    mse = (np.mean((f - ia) ** 2) + np.mean((f - ib) ** 2)) / 2.0
    return float("inf") if mse == 0 else float(10.0 * np.log10(PEAK ** 2 / mse))
