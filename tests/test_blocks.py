"""Blocks of output rows computed apart and merged: equal to one whole-image computation."""
from __future__ import annotations

import numpy as np
import pytest
from saliency_helpers import Dilated, DownUp, MeanSubtract, brute_rows, build, fresh, pair

import fusion
from fusion.saliency import Method, dense_jacobian
from fusion.saliency.blocks import dense_block, merge_blocks, split_rows, strip_of
from fusion.saliency.dense import dense_method

#: Bands that cut through the field: a one-row block, blocks shorter than the field, an uneven tail.
CUTS = [(0, 4), (4, 5), (5, 13), (13, 30)]


def assert_same(merged, whole, rtol=1e-9):
    """Every map, the fused image and the bands of ``merged`` equal ``whole``'s (to ``rtol`` of each max)."""
    assert merged.method == whole.method and merged.field == whole.field and merged.shape == whole.shape
    for name in ("guidance_a", "guidance_b", "influence_a", "influence_b", "fused", "band_a", "band_b"):
        got, want = getattr(merged, name), getattr(whole, name)
        if want is None:
            assert got is None, name
            continue
        np.testing.assert_allclose(got, want, rtol=0, atol=rtol * max(np.abs(want).max(), 1e-30), err_msg=name)


def merged(model, a, b, bounds, method):
    blocks = [dense_block(model, a, b, top, bottom, method) for top, bottom in bounds]
    return merge_blocks(model, a, b, blocks[::-1])  # any order


@pytest.mark.parametrize("name", fusion.list_models())
def test_registered_models_blocks_equal_the_whole_image(name):
    """Every registered model, on its own path (crops for the networks on the CPU), split four ways
    and two ways, equals ``dense_jacobian``; block-edge rows equal full-image autograd."""
    model = fresh(name)
    a, b = pair(30, 17, seed=5)
    method, _, _ = dense_method(model, 30, 17)
    whole = dense_jacobian(model, a, b)
    for bounds in (split_rows(30, 2), CUTS):
        result = merged(model, a, b, bounds, method)
        assert result.reason is None
        assert_same(result, whole)
    edges = [(0, 0), (4, 0), (4, 16), (5, 8), (12, 16), (13, 0), (29, 16)]
    want_a, want_b, _ = brute_rows(model, a, b, edges)
    for k, pixel in enumerate(edges):
        got_a, got_b = result.row(*pixel)
        np.testing.assert_allclose(got_a, want_a[k], atol=1e-9 * max(np.abs(want_a[k]).max(), 1e-30))
        np.testing.assert_allclose(got_b, want_b[k], atol=1e-9 * max(np.abs(want_b[k]).max(), 1e-30))


@pytest.mark.parametrize("method", [Method.CROPS, Method.COLOURED, Method.FULL_IMAGE])
def test_each_path_in_blocks(method):
    model = build(Dilated)
    a, b = pair(30, 22, seed=6)
    assert_same(merged(model, a, b, CUTS, method), dense_jacobian(model, a, b, method=method))


@pytest.mark.parametrize("method", [Method.CROPS, Method.COLOURED])
def test_blocks_without_their_band_merge_to_the_same_maps(method):
    model = build(Dilated)
    a, b = pair(30, 22, seed=6)
    blocks = [dense_block(model, a, b, top, bottom, method, keep_band=False) for top, bottom in CUTS]
    assert all(block.band_a is None and block.reason is None for block in blocks)
    result, whole = merge_blocks(model, a, b, blocks), dense_jacobian(model, a, b, method=method, keep_band=False)
    assert_same(result, whole)


@pytest.mark.parametrize("cls", [DownUp, MeanSubtract])
def test_strided_and_global_models_take_the_whole_image_per_block(cls):
    """A model with stride 2, or a global operation, cannot be cut into strips: each block runs on the whole
    image and visits only its rows; the merge still equals the single computation."""
    model = build(cls)
    a, b = pair(24, 20, seed=8)
    method, field, _ = dense_method(model, 24, 20)
    assert strip_of(field.clipped(24, 20), 5, 9, 24, method) == (0, 24)
    assert_same(merged(model, a, b, [(0, 5), (5, 9), (9, 24)], method), dense_jacobian(model, a, b))


def test_a_strip_is_only_the_rows_the_block_needs():
    model = build(Dilated)  # field 13 x 13: six rows either side
    a, b = pair(40, 20, seed=1)
    field = dense_method(model, 40, 20)[1].clipped(40, 20)
    assert strip_of(field, 10, 20, 40, Method.CROPS) == (10 - field.up, 20 + field.down)
    assert strip_of(field, 0, 3, 40, Method.CROPS) == (0, 3 + field.down)
    calls = []
    block = dense_block(model, a, b, 10, 20, Method.CROPS,
                        progress=lambda done, total, preview: calls.append((done, total, preview)))
    assert block.guidance_a.shape == (10, 20) and block.band_a.shape == (10, 20, 13, 13)
    assert calls[-1][0] == calls[-1][1] == 10 * 20  # only the block's own pixels are visited
    assert calls[-1][2]["mri_share"].shape == (10, 20)


@pytest.mark.parametrize("keep_band", [True, False])
def test_a_block_that_disagrees_is_never_served(monkeypatch, keep_band):
    """A block whose rows disagree with full-image autograd (here: a path made wrong on purpose) is redone by
    one backward pass per pixel of its rows; the merged result is exact and says why. A block that keeps no
    band still checks the band rows of its checked pixels, computed for them alone."""
    from fusion.saliency import blocks as blocks_module

    right = blocks_module.compute

    shapes = []

    def wrong(*args, **kwargs):
        taken, maps, bands, fused = right(*args, **kwargs)
        if bands:
            shapes.append(bands[0].shape)
            bands[0][:] *= 1.5
        return taken, maps, bands, fused

    monkeypatch.setattr(blocks_module, "compute", wrong)
    model = build(Dilated)  # field 13 x 13
    a, b = pair(24, 18, seed=2)
    blocks = [dense_block(model, a, b, top, bottom, Method.CROPS, keep_band=keep_band)
              for top, bottom in [(0, 9), (9, 24)]]
    checked = [len(blocks_module.block_pixels(top, bottom, 24, 18)) for top, bottom in [(0, 9), (9, 24)]]
    assert shapes == ([(9, 18, 13, 13), (15, 18, 13, 13)] if keep_band else [(n, 13, 13) for n in checked])
    assert all(block.method == Method.FULL_IMAGE and "disagrees" in block.reason for block in blocks)
    result = merge_blocks(model, a, b, blocks)
    assert result.method == Method.FULL_IMAGE and "disagrees" in result.reason and result.band_a is None
    whole = dense_jacobian(model, a, b)
    for name in ("guidance_a", "guidance_b", "influence_a", "influence_b"):
        np.testing.assert_allclose(getattr(result, name), getattr(whole, name), atol=1e-9)


def test_blocks_must_tile_the_image():
    model = build(Dilated)
    a, b = pair(20, 12, seed=3)
    blocks = [dense_block(model, a, b, top, bottom, Method.CROPS) for top, bottom in [(0, 8), (10, 20)]]
    with pytest.raises(ValueError, match="cover rows"):
        merge_blocks(model, a, b, blocks)
    with pytest.raises(ValueError, match="cover rows"):
        merge_blocks(model, a, b, blocks + [dense_block(model, a, b, 6, 10, Method.CROPS)])
    with pytest.raises(ValueError, match="not a band"):
        dense_block(model, a, b, 5, 5, Method.CROPS)
    with pytest.raises(ValueError, match="unknown method"):
        dense_block(model, a, b, 0, 5, "auto")


def test_split_rows():
    assert split_rows(256, 4) == [(0, 64), (64, 128), (128, 192), (192, 256)]
    assert split_rows(3, 8) == [(0, 1), (1, 2), (2, 3)]
    assert split_rows(7, 1) == [(0, 7)]
