"""Dense Jacobians: guidance, influence, share and rows against full-image autograd."""
from __future__ import annotations

import threading

import numpy as np
import pytest
import torch
from saliency_helpers import (
    Dilated,
    DownUp,
    FunctionalPool,
    MeanSubtract,
    brute_jacobian,
    brute_rows,
    build,
    fresh,
    pair,
)

import fusion
from fusion.saliency import (
    Cancelled,
    DenseJacobian,
    Method,
    analyse,
    colour_order,
    dense_jacobian,
    pixel_jacobian,
    receptive_field,
    verify_replay,
    verify_shrinking,
)
from fusion.saliency.programs import recorded_programs


def sample_pixels(height: int, width: int, n_random: int = 10, seed: int = 0) -> list[tuple[int, int]]:
    """Corners, edge midpoints and random pixels (the rows checked against brute force)."""
    rng = np.random.default_rng(seed)
    pixels = [(0, 0), (0, width - 1), (height - 1, 0), (height - 1, width - 1), (0, width // 2),
              (height - 1, width // 2), (height // 2, 0), (height // 2, width - 1)]
    pixels += [(int(rng.integers(height)), int(rng.integers(width))) for _ in range(n_random)]
    return list(dict.fromkeys(pixels))


def assert_dense_exact(dense: DenseJacobian, model, a, b, rtol=3e-7, full=False):
    """Maps and rows of ``dense`` (float32) against full-image autograd in float64.

    ``full``: every pixel against the brute-force Jacobian; else the rows of ``sample_pixels``.
    """
    height, width = a.shape
    if full:
        ja, jb, fused = brute_jacobian(model, a, b)
        pixels = [(r, c) for r in range(height) for c in range(width)]
        ja, jb = ja.reshape(-1, height, width), jb.reshape(-1, height, width)
    else:
        pixels = sample_pixels(height, width)
        ja, jb, fused = brute_rows(model, a, b, pixels)
    rr, cc = np.array(pixels).T
    k = np.arange(len(pixels))
    for got, rows in ((dense.guidance_a, ja), (dense.guidance_b, jb)):
        want = rows[k, rr, cc]
        np.testing.assert_allclose(got[rr, cc], want, rtol=0, atol=rtol * max(np.abs(want).max(), 1e-12))
    ia, ib = np.abs(ja).sum(axis=(1, 2)), np.abs(jb).sum(axis=(1, 2))
    np.testing.assert_allclose(dense.influence_a[rr, cc], ia, rtol=rtol, atol=1e-12)
    np.testing.assert_allclose(dense.influence_b[rr, cc], ib, rtol=rtol, atol=1e-12)
    share = np.where(ia + ib > 0, ia / np.where(ia + ib > 0, ia + ib, 1), 0.5)
    np.testing.assert_allclose(dense.mri_share[rr, cc], share, atol=1e-6)
    np.testing.assert_allclose(dense.fused, fused, atol=1e-6)
    for j in range(min(len(pixels), 12)):
        got_a, got_b = dense.row(*pixels[j])
        np.testing.assert_allclose(got_a, ja[j], rtol=0, atol=rtol * max(np.abs(ja[j]).max(), 1e-12))
        np.testing.assert_allclose(got_b, jb[j], rtol=0, atol=rtol * max(np.abs(jb[j]).max(), 1e-12))


def _heavy(name: str) -> bool:
    """More than 50 k parameters: its dense float64 test takes tens of seconds on a 2-core CPU."""
    return sum(p.numel() for p in fresh(name).parameters()) > 50_000


@pytest.mark.parametrize("method", ["auto", Method.COLOURED])
@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if _heavy(n) else n
                                  for n in fusion.list_models()])
def test_registered_models_dense_exact(name, method):
    """Both local paths: "auto" on the CPU takes the crops where their shrinking windows and replay
    are verified (every bundled network), else the coloured passes."""
    model = fresh(name)
    a, b = pair(22, 19, seed=2)
    dense = dense_jacobian(model, a, b, method=method)
    crops = verify_shrinking(model, 22, 19) and verify_replay(model, 22, 19)
    assert dense.method == (Method.CROPS if method == "auto" and crops else Method.COLOURED) and dense.reason is None
    if _heavy(name):
        assert dense.method == (Method.CROPS if method == "auto" else method)  # the networks: each path tested
    assert dense.receptive_field == receptive_field(model)
    assert_dense_exact(dense, model, a, b)


@pytest.mark.slow
def test_crops_in_an_image_smaller_than_the_field():
    """FunFuseAn's field (23) is wider than this image: every window is clipped on two sides, and the
    pixels of one batch sit at different places in their windows."""
    model = fresh("funfusean")
    a, b = pair(13, 11, seed=7)
    dense = dense_jacobian(model, a, b, method=Method.CROPS)
    assert dense.method == Method.CROPS and dense.band_a.shape == (13, 11, 23, 21)  # the field clipped to 2H-1 x 2W-1
    assert_dense_exact(dense, model, a, b, full=True)


def test_dense_against_the_whole_brute_force_jacobian():
    model = build(Dilated)  # receptive field 13: 169 coloured passes for 24 x 20 = 480 pixels
    a, b = pair(24, 20, seed=3)
    for method in (Method.COLOURED, Method.CROPS):
        dense = dense_jacobian(model, a, b, method=method)
        assert dense.method == method and dense.band_a.shape == (24, 20, 13, 13)
        assert_dense_exact(dense, model, a, b, full=True)


def test_rows_equal_pixel_jacobian_float32():
    model = build(Dilated).float()
    a, b = pair(36, 30, seed=4)
    dense = dense_jacobian(model, a, b)
    for r, c in [(0, 0), (35, 29), (17, 3), (11, 22), (30, 0)]:
        ja, jb = pixel_jacobian(model, a, b, r, c)
        da, db = dense.row(r, c)
        assert da.dtype == np.float32 and da.shape == (36, 30)
        np.testing.assert_allclose(da, ja, atol=1e-5 * np.abs(ja).max())
        np.testing.assert_allclose(db, jb, atol=1e-5 * np.abs(jb).max())


def test_weighted_average_dense_is_analytic():
    model = fusion.create_model("weighted-average", w=0.25)
    a, b = pair(16, 18)
    dense = dense_jacobian(model, a, b)
    np.testing.assert_allclose(dense.guidance_a, 0.25)
    np.testing.assert_allclose(dense.guidance_b, 0.75)
    np.testing.assert_allclose(dense.influence_a, 0.25)
    np.testing.assert_allclose(dense.mri_share, 0.25)
    assert dense.band_a.shape == (16, 18, 1, 1)


@pytest.mark.parametrize("cls, method", [(DownUp, Method.COLOURED), (MeanSubtract, Method.FULL_IMAGE),
                                         (FunctionalPool, Method.FULL_IMAGE)])
def test_awkward_models_dense(cls, method):
    model = build(cls)
    a, b = pair(13, 11, seed=6)
    dense = dense_jacobian(model, a, b)
    assert dense.method == method
    assert (dense.reason is None) == (method == Method.COLOURED)
    assert_dense_exact(dense, model, a, b, full=True)


def test_wrong_band_is_detected_and_recomputed():
    """Forcing the coloured path on a model whose field is misaligned: the band check catches it."""
    model = build(FunctionalPool)
    a, b = pair(14, 12, seed=8)
    dense = dense_jacobian(model, a, b, method=Method.COLOURED)
    assert dense.method == Method.FULL_IMAGE and "disagrees" in dense.reason
    assert_dense_exact(dense, model, a, b, full=True)


def test_colour_order_is_a_coarse_to_fine_permutation():
    order = colour_order(7, 5)
    assert sorted(order) == [(dy, dx) for dy in range(7) for dx in range(5)]
    assert order[:4] == [(0, 0), (0, 4), (4, 0), (4, 4)]


def test_progress_preview_and_memory_bound():
    model = build(Dilated).float()
    a, b = pair(30, 26, seed=9)
    calls = []

    def progress(done, total, preview):
        calls.append((done, total, {k: v.copy() for k, v in preview.items()}))

    dense = dense_jacobian(model, a, b, progress=progress, memory_budget=1, method=Method.COLOURED)  # a colour a chunk
    total = 13 * 13
    assert [c[0] for c in calls] == list(range(1, total + 1)) and {c[1] for c in calls} == {total}
    first = calls[0][2]
    assert set(first) == {"guidance_a", "guidance_b", "influence_a", "influence_b", "mri_share"}
    known = ~np.isnan(first["guidance_a"])
    assert known.sum() == 3 * 2 and known[0, 0]  # colour (0, 0): rows 0, 13, 26 x columns 0, 13
    # after four colours, (0, 0), (0, 8), (8, 0), (8, 8): a grid twice as dense, still spread out
    quarter = ~np.isnan(calls[3][2]["guidance_a"])
    assert np.array_equal(np.argwhere(quarter.any(axis=1)).ravel(), [0, 8, 13, 21, 26])
    assert np.array_equal(np.argwhere(quarter.any(axis=0)).ravel(), [0, 8, 13, 21])
    assert quarter.sum() == 5 * 4
    np.testing.assert_array_equal(calls[-1][2]["guidance_a"], dense.guidance_a)
    np.testing.assert_array_equal(first["guidance_a"][known], dense.guidance_a[known])


def test_memory_setting_from_the_environment(monkeypatch):
    """$FUSION_DENSE_MEMORY_MB bounds the chunks of the app, the service and the command line."""
    model = fresh("deepfuse", torch.float32)
    a, b = pair(64, 64, seed=1)

    def chunks():
        seen = []
        dense_jacobian(model, a, b, progress=lambda done, total: seen.append(done), keep_band=False,
                       method=Method.COLOURED)
        return seen

    monkeypatch.delenv("FUSION_DENSE_MEMORY_MB", raising=False)
    roomy = chunks()
    monkeypatch.setenv("FUSION_DENSE_MEMORY_MB", "16")  # 16 MiB / (4 x 64 x 64 x 32 channels x 4 bytes): 8 colours
    tight = chunks()
    assert roomy[-1] == tight[-1] == 25 * 25
    assert len(roomy) < len(tight) and tight[:2] == [8, 16]
    monkeypatch.setenv("FUSION_DENSE_MEMORY_MB", "lots")
    with pytest.raises(ValueError, match="FUSION_DENSE_MEMORY_MB"):
        chunks()


def test_two_argument_progress_is_accepted():
    model = fusion.create_model("weighted-average")
    seen = []
    dense_jacobian(model, *pair(10, 10), progress=lambda done, total: seen.append((done, total)))
    assert seen == [(100, 100)]  # the crop path: 100 pixels in one chunk
    seen.clear()
    dense_jacobian(model, *pair(10, 10), progress=lambda done, total: seen.append((done, total)),
                   method=Method.COLOURED)
    assert seen == [(1, 1)]  # one colour


@pytest.mark.parametrize("kind", ["event", "callable"])
def test_cancel(kind):
    model = build(Dilated).float()
    a, b = pair(30, 30)
    event = threading.Event()
    calls = []

    def progress(done, total, preview):
        calls.append(done)
        if done >= 3:
            event.set()

    cancel = event if kind == "event" else event.is_set
    with pytest.raises(Cancelled):
        dense_jacobian(model, a, b, progress=progress, cancel=cancel, memory_budget=1, method=Method.COLOURED)
    assert calls == [1, 2, 3]


def test_crops_progress_preview_and_cancel(monkeypatch):
    """The crop path visits the pixels whose window reaches no image edge in the colour order, CROP_PIXELS at a
    time (then the others, grouped by window geometry): its first preview holds colour (0, 0)'s pixels inside
    the image, then the next colours', like the coloured path's."""
    from fusion.saliency import dense_paths as dense_module

    monkeypatch.setattr(dense_module, "CROP_PIXELS", 6)
    model = build(Dilated).float()
    a, b = pair(30, 26, seed=9)
    calls = []
    dense = dense_jacobian(model, a, b, method=Method.CROPS,
                           progress=lambda done, total, preview: calls.append((done, total, preview)))
    assert dense.method == Method.CROPS
    assert [c[0] for c in calls] == list(range(6, 30 * 26 + 1, 6)) and {c[1] for c in calls} == {30 * 26}
    known = ~np.isnan(calls[0][2]["guidance_a"])
    field = analyse(model)
    inside = np.zeros_like(known)
    inside[field.up:30 - field.down, field.left:26 - field.right] = True
    assert known.sum() == 6 and known[13, 13] and not (known & ~inside).any()
    np.testing.assert_array_equal(calls[-1][2]["influence_b"], dense.influence_b)
    event = threading.Event()
    with pytest.raises(Cancelled, match="after 12 of 780 pixels"):
        dense_jacobian(model, a, b, method=Method.CROPS, cancel=event,
                       progress=lambda done, total, preview: event.set() if done >= 12 else None)


def test_without_band_rows_fall_back_to_pixel_path():
    model = build(Dilated)
    a, b = pair(20, 22, seed=12)
    dense = dense_jacobian(model, a, b, keep_band=False)
    assert dense.band_a is None
    ja, jb = pixel_jacobian(model, a, b, 19, 0)
    np.testing.assert_array_equal(dense.row(19, 0)[0], ja)
    dense.model = None
    with pytest.raises(ValueError, match="pixel_jacobian"):
        dense.row(0, 0)


def test_crops_record_no_window_program_for_corner_geometries():
    """In a whole image each corner geometry holds one pixel: recording its program would cost more
    than it saves. The interior and the edges, which repeat along the image, are recorded."""
    model = build(Dilated).float()
    dense = dense_jacobian(model, *pair(30, 26, seed=1), method=Method.CROPS)
    assert dense.method == Method.CROPS
    borders = [key[1] for key, program in recorded_programs(model).items() if program is not None]
    assert (False, False, False, False) in borders and (True, False, False, False) in borders
    assert not any((top or bottom) and (left or right) for top, bottom, left, right in borders)
