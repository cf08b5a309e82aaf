"""Colour mapping: zero at the diverging centre, gamma re-colours only, shared vs per-map ranges."""
import base64
import io

import numpy as np
import plotly.colors as pc
import pytest
from PIL import Image

from dashboard import colour


def centre_colour(scale):
    return np.array(pc.unlabel_rgb(pc.sample_colorscale(pc.get_colorscale(scale), [0.5])[0]))


@pytest.mark.parametrize("gamma", [0.1, 0.5, 1.0, 2.0])
def test_zero_maps_to_the_centre_of_the_diverging_scale(gamma):
    spec = colour.ColourSpec(colour.DIVERGING, "signed", -3.0, 3.0, gamma)
    values = np.array([[0.0, 2.0], [-2.0, 0.0]], np.float32)
    rgba = colour.colourise(values, spec)
    assert (rgba[0, 0, :3] == centre_colour(colour.DIVERGING)).all()
    assert (rgba[1, 1, :3] == rgba[0, 0, :3]).all()
    # positive and negative values get different, non-centre colours (negatives are not drawn as 0)
    assert not (rgba[0, 1, :3] == rgba[0, 0, :3]).all()
    assert not (rgba[1, 0, :3] == rgba[0, 0, :3]).all()
    assert not (rgba[0, 1, :3] == rgba[1, 0, :3]).all()


def test_signed_scale_is_symmetric_in_position():
    spec = colour.ColourSpec(colour.DIVERGING, "signed", -1.0, 1.0, 0.7)
    t = colour.normalise(np.array([-0.4, 0.4]), spec)
    assert t[0] + t[1] == pytest.approx(1.0)


def test_gamma_changes_colours_but_not_the_data():
    values = np.linspace(-1, 1, 101, dtype=np.float32).reshape(1, -1)
    before = values.copy()
    plain = colour.colourise(values, colour.ColourSpec(colour.DIVERGING, "signed", -1, 1, 1.0))
    bent = colour.colourise(values, colour.ColourSpec(colour.DIVERGING, "signed", -1, 1, 0.3))
    assert np.array_equal(values, before)
    assert not np.array_equal(plain, bent)
    # the ends and the centre stay put; only the colours in between move
    assert np.array_equal(plain[0, [0, 50, 100]], bent[0, [0, 50, 100]])


def test_magnitude_mode_uses_absolute_values():
    spec = colour.ColourSpec(colour.SEQUENTIAL, "magnitude", 0.0, 2.0)
    rgba = colour.colourise(np.array([[-2.0, 2.0, 0.0]]), spec)
    assert np.array_equal(rgba[0, 0], rgba[0, 1])
    assert np.array_equal(rgba[0, 2, :3], colour.lut(colour.SEQUENTIAL)[0])


def test_shared_and_per_map_ranges():
    maps = {"a": np.array([0.1, -0.5]), "b": np.array([2.0, 0.0])}
    per_map = colour.limits(maps, "signed", shared=False)
    shared = colour.limits(maps, "signed", shared=True)
    assert per_map == {"a": (-0.5, 0.5), "b": (-2.0, 2.0)}
    assert shared == {"a": (-2.0, 2.0), "b": (-2.0, 2.0)}
    assert colour.limits(maps, "magnitude", shared=True)["a"] == (0.0, 2.0)
    assert colour.limits(maps, "linear", shared=False)["a"] == (-0.5, 0.1)


def test_all_zero_map_gets_a_usable_range_and_the_centre_colour():
    zeros = np.zeros((3, 3))
    (lo, hi), = colour.limits({"z": zeros}, "signed", shared=False).values()
    assert (lo, hi) == (-1.0, 1.0)
    rgba = colour.colourise(zeros, colour.ColourSpec(colour.DIVERGING, "signed", lo, hi))
    assert (rgba[..., :3] == centre_colour(colour.DIVERGING)).all()


def test_nan_is_transparent_and_finite_is_opaque():
    rgba = colour.colourise(np.array([[np.nan, 0.5]]), colour.ColourSpec(colour.GREY, "linear", 0, 1))
    assert rgba[0, 0, 3] == 0 and rgba[0, 1, 3] == 255


def decode(uri):
    assert uri.startswith("data:image/png;base64,")
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(uri.split(",", 1)[1]))))


def test_png_round_trip_keeps_the_pixels():
    spec = colour.ColourSpec(colour.DIVERGING, "signed", -1, 1, 1.0)
    values = np.random.default_rng(0).uniform(-1, 1, (7, 5))
    assert np.array_equal(decode(colour.map_uri(values, spec)), colour.colourise(values, spec)[..., :3])


def test_colourbar_matches_the_map_colouring():
    spec = colour.ColourSpec(colour.DIVERGING, "signed", -4, 4, 0.4)
    bar = decode(colour.colourbar_uri(spec, n=9))
    assert bar.shape == (1, 9, 3)
    assert np.array_equal(bar[0], colour.colourise(np.linspace(-4, 4, 9), spec)[:, :3])
    assert [text for _, text in colour.ticks(spec)] == ["-4", "0", "4"]
    assert [pos for pos, _ in colour.ticks(spec)] == [0.0, 0.5, 1.0]


def test_rgb_composite_channels_are_min_max_scaled():
    g_mri = np.array([[0.0, 2.0]])
    g_pet = np.array([[-1.0, 1.0]])
    fused = np.array([[0.2, 0.4]])
    rgba = colour.rgb_composite(g_mri, g_pet, fused)
    assert rgba[0, 0].tolist() == [0, 0, 0, 255]
    assert rgba[0, 1].tolist() == [255, 255, 255, 255]


def test_bad_specs_are_refused():
    with pytest.raises(ValueError):
        colour.ColourSpec(colour.GREY, "log", 0, 1)
    with pytest.raises(ValueError):
        colour.ColourSpec(colour.GREY, "linear", 0, 1, gamma=0)


@pytest.mark.parametrize("shape", [(1, 1), (7, 5), (35, 35), (256, 200), (3, 4, 3), (70, 90, 3), (64, 80, 4)])
def test_png_bytes_decode_to_the_same_pixels(shape):
    """Grey, RGB and RGBA, small (unfiltered rows) and large (Up-filtered rows), as an image library reads them."""
    pixels = np.random.default_rng(1).integers(0, 256, shape, dtype=np.uint8)
    pixels.reshape(-1)[: pixels.size // 3] = 7  # runs of equal bytes, and a wrap-around below zero in the Up filter
    decoded = np.asarray(Image.open(io.BytesIO(colour.png_bytes(pixels))))
    assert np.array_equal(decoded, pixels)


def test_png_of_opaque_rgba_is_rgb_and_unknown_pixels_stay_transparent():
    values = np.array([[0.2, np.nan], [0.9, 0.5]])
    rgba = colour.colourise(values, colour.ColourSpec(colour.SEQUENTIAL, "linear", 0, 1))
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(colour.png_bytes(rgba)))), rgba)
    opaque = colour.colourise(values[:, :1], colour.ColourSpec(colour.SEQUENTIAL, "linear", 0, 1))
    assert np.array_equal(decode(colour.data_uri(opaque)), opaque[..., :3])
