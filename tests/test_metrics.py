"""fusion.metrics: each metric on cases whose value is known by construction, against a plain
re-implementation written here (loops, the formula as printed), and on bad inputs.

Published reference values: the papers (Xydeas and Petrovic 2000; Sheikh and Bovik 2006) report
Qabf and VIF only on their own images, which no package ships, so no number from them can be
recomputed here. What they state and is tested: VIF of an image against itself is 1, and above 1
for a contrast-enhanced copy (Sheikh and Bovik 2006, section IV); Qabf lies in [0, 1] and is
largest when the fused image keeps every edge of both sources (Xydeas and Petrovic 2000).
"""
import collections
import itertools
import math
import statistics

import numpy as np
import pytest
from scipy.signal import correlate2d

from fusion import metrics
from fusion.errors import InvalidInput


def smooth_image(seed: int, size: int = 48) -> np.ndarray:
    """A textured H x W image in [0, 1] (smooth blobs plus detail)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size, 0:size] / size
    img = 0.5 + 0.25 * np.sin(7 * x + rng.uniform(0, 6)) * np.cos(5 * y) + 0.1 * rng.standard_normal((size, size))
    return np.clip(img, 0, 1)


A, B = smooth_image(1), smooth_image(2)
F = np.clip(0.6 * A + 0.4 * B, 0, 1)


# ------------------------------------------------------------------ plain re-implementations
def plain_entropy(img) -> float:
    counts = collections.Counter(int(round(v * 255)) for v in np.ravel(img))
    n = sum(counts.values())
    return -sum(c / n * math.log2(c / n) for c in counts.values())


def plain_sf(img) -> float:
    f = np.asarray(img) * 255
    h, w = f.shape
    rf = sum((f[i][j] - f[i][j - 1]) ** 2 for i in range(h) for j in range(1, w)) / (h * (w - 1))
    cf = sum((f[i][j] - f[i - 1][j]) ** 2 for i in range(1, h) for j in range(w)) / ((h - 1) * w)
    return math.sqrt(rf + cf)


def plain_ag(img) -> float:
    f = np.asarray(img) * 255
    h, w = f.shape

    def d(get, k, n):  # central difference inside, one-sided at the ends
        if k == 0:
            return get(1) - get(0)
        if k == n - 1:
            return get(n - 1) - get(n - 2)
        return (get(k + 1) - get(k - 1)) / 2

    total = 0.0
    for i, j in itertools.product(range(h), range(w)):
        gx = d(lambda c, i=i: f[i][c], j, w)
        gy = d(lambda r, j=j: f[r][j], i, h)
        total += math.sqrt((gx * gx + gy * gy) / 2)
    return total / (h * w)


def plain_mi(x, y) -> float:
    u = [int(round(v * 255)) for v in np.ravel(x)]
    v = [int(round(t * 255)) for t in np.ravel(y)]
    n = len(u)
    pu, pv, puv = collections.Counter(u), collections.Counter(v), collections.Counter(zip(u, v, strict=True))
    return sum(c / n * math.log((c / n) / (pu[a] / n * pv[b] / n)) for (a, b), c in puv.items())


def plain_vif(ref, dist) -> float:
    """vifp_mscale as printed, with full 2-D windows (scipy's correlate2d) instead of separable filters."""
    ref, dist = np.asarray(ref) * 255.0, np.asarray(dist) * 255.0
    num = den = 0.0
    for scale in range(1, 5):
        n = 2 ** (4 - scale + 1) + 1
        ax = np.arange(n) - (n - 1) / 2
        win = np.exp(-(ax[:, None] ** 2 + ax[None, :] ** 2) / (2 * (n / 5) ** 2))
        win /= win.sum()

        def filt(z, win=win):
            return correlate2d(z, win, mode="valid")

        if scale > 1:
            ref, dist = filt(ref)[::2, ::2], filt(dist)[::2, ::2]
        mu1, mu2 = filt(ref), filt(dist)
        s1 = np.maximum(filt(ref * ref) - mu1 ** 2, 0)
        s2 = np.maximum(filt(dist * dist) - mu2 ** 2, 0)
        s12 = filt(ref * dist) - mu1 * mu2
        for k in np.ndindex(s1.shape):
            a1, a2, a12 = s1[k], s2[k], s12[k]
            g = a12 / (a1 + 1e-10)
            sv = a2 - g * a12
            if a1 < 1e-10:
                g, sv, a1 = 0.0, a2, 0.0
            if a2 < 1e-10:
                g, sv = 0.0, 0.0
            if g < 0:
                sv, g = a2, 0.0
            sv = max(sv, 1e-10)
            num += math.log10(1 + g * g * a1 / (sv + 2.0))
            den += math.log10(1 + a1 / 2.0)
    return num / den


def plain_qabf(f, a, b) -> float:
    """Xydeas-Petrovic per pixel, Sobel sums written out with zero padding."""
    def edges(img):
        z = np.pad(np.asarray(img) * 255.0, 1)
        h, w = np.shape(img)
        g, ang = np.zeros((h, w)), np.zeros((h, w))
        for i, j in itertools.product(range(h), range(w)):
            p = z[i:i + 3, j:j + 3]
            sx = (p[0, 2] + 2 * p[1, 2] + p[2, 2]) - (p[0, 0] + 2 * p[1, 0] + p[2, 0])
            sy = (p[2, 0] + 2 * p[2, 1] + p[2, 2]) - (p[0, 0] + 2 * p[0, 1] + p[0, 2])
            g[i, j] = math.sqrt(sx * sx + sy * sy)
            ang[i, j] = math.pi / 2 if sx == 0 else math.atan(sy / sx)
        return g, ang

    def q(gs, as_, gf, af):
        gg = 1.0 if max(gs, gf) == 0 else min(gs, gf) / max(gs, gf)
        aa = 1 - abs(as_ - af) / (math.pi / 2)
        return 0.9994 / (1 + math.exp(-15 * (gg - 0.5))) * 0.9879 / (1 + math.exp(-22 * (aa - 0.8)))

    (ga, aa), (gb, ab), (gf, af) = edges(a), edges(b), edges(f)
    num = den = 0.0
    for k in np.ndindex(ga.shape):
        num += q(ga[k], aa[k], gf[k], af[k]) * ga[k] + q(gb[k], ab[k], gf[k], af[k]) * gb[k]
        den += ga[k] + gb[k]
    return num / den


def plain_ssim(x, y) -> float:
    """SSIM with a 7 x 7 uniform window, sample covariance, data range 255, mean over the valid windows."""
    x, y = np.asarray(x) * 255.0, np.asarray(y) * 255.0
    c1, c2, n = (0.01 * 255) ** 2, (0.03 * 255) ** 2, 49
    values = []
    for i in range(x.shape[0] - 6):
        for j in range(x.shape[1] - 6):
            p, q = x[i:i + 7, j:j + 7].ravel(), y[i:i + 7, j:j + 7].ravel()
            mx, my = p.mean(), q.mean()
            vx, vy = ((p - mx) ** 2).sum() / (n - 1), ((q - my) ** 2).sum() / (n - 1)
            cxy = ((p - mx) * (q - my)).sum() / (n - 1)
            values.append((2 * mx * my + c1) * (2 * cxy + c2) / ((mx * mx + my * my + c1) * (vx + vy + c2)))
    return sum(values) / len(values)


# ------------------------------------------------------------------ against the plain versions
def test_single_image_metrics_match_plain_formulas():
    small = F[:20, :24]
    assert metrics.entropy(small) == pytest.approx(plain_entropy(small), abs=1e-12)
    assert metrics.standard_deviation(small) == pytest.approx(statistics.pstdev((small * 255).ravel().tolist()))
    assert metrics.spatial_frequency(small) == pytest.approx(plain_sf(small), rel=1e-12)
    assert metrics.average_gradient(small) == pytest.approx(plain_ag(small), rel=1e-12)


def test_mi_matches_definition_and_sklearn():
    expected = plain_mi(F, A) + plain_mi(F, B)
    assert metrics.mutual_information(F, A, B) == pytest.approx(expected, rel=1e-10)
    sklearn_metrics = pytest.importorskip("sklearn.metrics")  # nilearn (requirements-dev.txt) brings it
    level = np.rint(np.clip(F, 0, 1) * 255).astype(int).ravel()
    for src in (A, B):
        ref = sklearn_metrics.mutual_info_score(level, np.rint(src * 255).astype(int).ravel())
        assert metrics.mutual_information_pair(F, src) == pytest.approx(ref, rel=1e-10)


def test_scd_matches_statistics_correlation():
    expected = (statistics.correlation((F - B).ravel().tolist(), A.ravel().tolist())
                + statistics.correlation((F - A).ravel().tolist(), B.ravel().tolist()))
    assert metrics.scd(F, A, B) == pytest.approx(expected, rel=1e-10)


def test_vif_matches_plain_vifp_mscale():
    assert metrics.vif(F, A, B) == pytest.approx(plain_vif(A, F) + plain_vif(B, F), rel=1e-9)


def test_qabf_matches_plain_per_pixel_formula():
    f, a, b = F[:16, :16], A[:16, :16], B[:16, :16]
    assert metrics.qabf(f, a, b) == pytest.approx(plain_qabf(f, a, b), rel=1e-10)


def test_ssim_is_scikit_image_with_the_stated_window():
    f, a, b = F[:20, :20], A[:20, :20], B[:20, :20]
    assert metrics.ssim_sum(f, a, b) == pytest.approx(plain_ssim(f, a) + plain_ssim(f, b), rel=1e-9)


# ------------------------------------------------------------------ known by construction
def test_identical_images():
    """F = A = B: SSIM 2, VIF 2 (1 each: Sheikh and Bovik), PSNR inf, MI 2 H(A) in nats,
    Qabf the formula's ceiling, SCD undefined (F - B is constant)."""
    m = metrics.evaluate(A, A, A)
    assert m["SSIM"] == pytest.approx(2.0)
    assert m["VIF"] == pytest.approx(2.0, abs=1e-9)
    assert m["PSNR"] == math.inf
    assert m["MI"] == pytest.approx(2 * plain_entropy(A) * math.log(2), rel=1e-10)
    ceiling = 0.9994 / (1 + math.exp(-15 * 0.5)) * 0.9879 / (1 + math.exp(-22 * 0.2))
    assert m["Qabf"] == pytest.approx(ceiling, rel=1e-12)
    assert math.isnan(m["SCD"])


def test_constant_image():
    c = np.full((48, 48), 0.4)
    assert metrics.entropy(c) == 0.0
    assert metrics.standard_deviation(c) == 0.0
    assert metrics.spatial_frequency(c) == 0.0
    assert metrics.average_gradient(c) == 0.0
    assert metrics.mutual_information(c, A, B) == pytest.approx(0.0, abs=1e-12)  # H(F) = 0
    assert metrics.vif(c, A, B) == 0.0  # nothing of either source survives
    # no edge kept (a black image: the zero padding of the Sobel filters adds no border edge to it)
    assert metrics.qabf(np.zeros_like(c), A, B) < 0.9994 / (1 + math.exp(15 * 0.5))
    assert math.isnan(metrics.scd(F, c, B))  # corr(F - B, constant) is undefined
    assert math.isnan(metrics.vif(F, c, c))  # the reference has no information: 0 / 0
    assert math.isnan(metrics.qabf(F, 0 * c, 0 * c))  # no source edges to weigh (black: none at the border)


def test_shifted_copy():
    """A grey-level shift keeps everything but the level: MI(F, A) = H(A), SD, SF, AG unchanged;
    PSNR of F = A + d (B = A) is 10 log10(255^2 / (255 d)^2)."""
    a = np.rint(A * 200) / 255  # integer levels 0..200, so +20 levels stays in range
    shifted = a + 20 / 255
    assert metrics.mutual_information_pair(shifted, a) == pytest.approx(plain_entropy(a) * math.log(2), rel=1e-10)
    for name in ("standard_deviation", "spatial_frequency", "average_gradient"):
        assert getattr(metrics, name)(shifted) == pytest.approx(getattr(metrics, name)(a), rel=1e-9)
    assert metrics.psnr(shifted, a, a) == pytest.approx(10 * math.log10(255 ** 2 / 20 ** 2))
    # a periodic pattern shifted by part of its period: SF and AG move with the border only; by a whole
    # period: unchanged; SF of stripes of amplitude s and period 16 is known in closed form
    stripes = 0.5 + 0.4 * np.sin(np.arange(64) * 2 * np.pi / 16)[None, :].repeat(64, 0)
    for metric in (metrics.spatial_frequency, metrics.average_gradient):
        assert metric(np.roll(stripes, 16, axis=1)) == pytest.approx(metric(stripes), rel=1e-12)
    steps = np.diff(0.4 * 255 * np.sin(np.arange(64) * 2 * np.pi / 16))
    assert metrics.spatial_frequency(stripes) == pytest.approx(math.sqrt(np.mean(steps ** 2)), rel=1e-12)


def test_noise_of_known_variance():
    """+-d on a checkerboard has variance d^2 exactly; Gaussian noise of sigma s gives PSNR near 20 log10(255/s')."""
    d = 0.1
    board = 0.5 + d * np.where(np.indices((32, 32)).sum(0) % 2, 1.0, -1.0)
    assert metrics.standard_deviation(board) == pytest.approx(255 * d)
    assert metrics.psnr(board, np.full((32, 32), 0.5), np.full((32, 32), 0.5)) == pytest.approx(
        10 * math.log10(1 / d ** 2))
    rng = np.random.default_rng(0)
    sigma = 0.02
    base = np.full((256, 256), 0.5)
    noisy = base + sigma * rng.standard_normal(base.shape)
    assert metrics.standard_deviation(noisy) == pytest.approx(255 * sigma, rel=0.01)
    assert metrics.psnr(noisy, base, base) == pytest.approx(20 * math.log10(1 / sigma), abs=0.05)


def test_scd_of_the_sum_is_two_and_vif_of_contrast_enhancement_above_one():
    f = (A + B) / 2
    assert metrics.scd(f, A / 2, B / 2) == pytest.approx(2.0)
    base = 0.3 + 0.4 * A  # within [0.3, 0.7]: the stretch below needs no clipping
    stretched = 0.5 + 1.3 * (base - 0.5)
    assert metrics.vif_pair(base * 255, stretched * 255) > 1.0  # Sheikh and Bovik: contrast enhancement > 1


def test_evaluate_keys_and_consistency():
    m = metrics.evaluate(F, A, B)
    assert list(m) == ["EN", "SD", "SF", "AG", "MI", "SCD", "VIF", "Qabf", "SSIM", "PSNR"]
    assert m["SCD"] == metrics.scd(F, A, B) and m["Qabf"] == metrics.qabf(F, A, B)
    assert 0 < m["Qabf"] < 1 and 0 < m["EN"] <= 8
    assert all(metrics.HIGHER_IS_BETTER[k] for k in m)
    # a better fusion (the average) beats a worse one (A alone, noised) on the source-based metrics
    worse = np.clip(A + 0.2 * np.random.default_rng(3).standard_normal(A.shape), 0, 1)
    w = metrics.evaluate(worse, A, B)
    assert m["PSNR"] > w["PSNR"] and m["SSIM"] > w["SSIM"]


# ------------------------------------------------------------------ bad input
@pytest.mark.parametrize("fused, a, b, match", [
    (np.zeros((48, 48)), np.zeros((48, 50)), np.zeros((48, 48)), "differ in shape"),
    (np.full((48, 48), np.nan), np.zeros((48, 48)), np.zeros((48, 48)), "NaN"),
    (np.zeros((48, 48, 3)), np.zeros((48, 48, 3)), np.zeros((48, 48, 3)), "2-D"),
    (np.full((48, 48), 1.5), np.zeros((48, 48)), np.zeros((48, 48)), r"\[0, 1\]"),
    (np.zeros((20, 20)), np.zeros((20, 20)), np.zeros((20, 20)), "at least 41"),
    ([["a"]], np.zeros((48, 48)), np.zeros((48, 48)), "numeric"),
])
def test_bad_inputs_raise_invalid_input(fused, a, b, match):
    with pytest.raises(InvalidInput, match=match):
        metrics.evaluate(fused, a, b)


def test_single_metrics_check_their_inputs_too():
    with pytest.raises(InvalidInput, match="2-D"):
        metrics.entropy(np.zeros(10))
    with pytest.raises(InvalidInput, match="differ in shape"):
        metrics.qabf(F, A[:-1], B)
    with pytest.raises(InvalidInput, match="at least 7"):
        metrics.ssim_sum(F[:5, :5], A[:5, :5], B[:5, :5])


def test_saliency_summary():
    share = np.array([[0.2, 0.6], [0.9, np.nan]])
    mask = np.array([[True, True], [False, True]])
    s = metrics.saliency_summary(share, mask)
    assert s["mean_mri_share"] == pytest.approx(0.4) and s["mri_dominated"] == pytest.approx(0.5)
    assert metrics.saliency_summary(share)["mri_dominated"] == pytest.approx(2 / 3)
    empty = metrics.saliency_summary(share, np.zeros((2, 2), bool))
    assert math.isnan(empty["mean_mri_share"]) and math.isnan(empty["mri_dominated"])
    with pytest.raises(InvalidInput, match="boolean"):
        metrics.saliency_summary(share, np.ones((3, 3), bool))
