"""One colouring for every view (dashboard/paint.py), and the ids the layout hands to the browser."""
import numpy as np
import pytest
import torch

from dashboard import api, backend, colour, ids, layout, paint
from dashboard.config import Config


def test_derivatives_are_diverging_when_signed_and_sequential_as_magnitudes():
    x = np.array([[-2.0, 0.0], [1.0, np.nan]])
    signed = paint.paint(x, "derivative", "signed", gamma=0.5)
    assert (signed.spec.scale, signed.spec.lo, signed.spec.hi, signed.spec.gamma) == (colour.DIVERGING, -2, 2, 0.5)
    np.testing.assert_array_equal(signed.pixels, colour.colourise(x, signed.spec))
    assert signed.pixels[1, 1, 3] == 0 and signed.pixels[0, 1, 3] == 255  # unknown transparent, zero opaque
    assert [text for _, text in signed.ticks] == ["-2", "0", "2"]
    assert signed.uri == colour.data_uri(signed.pixels)
    magnitude = paint.paint(x, "derivative", "magnitude", lo_hi=(0.0, 4.0))
    assert (magnitude.spec.scale, magnitude.spec.lo, magnitude.spec.hi) == (colour.SEQUENTIAL, 0, 4)
    assert paint.spec("derivative", "signed", gamma=9) == colour.ColourSpec(colour.DIVERGING, "signed", -1, 1, 2.0)


def test_shares_keep_their_fixed_range_and_images_their_own():
    x = np.array([[0.2, 0.4], [0.6, 0.9]])
    assert paint.paint(x, "share", lo_hi=(0.2, 0.3)).spec == colour.ColourSpec(colour.SHARE, "linear", 0, 1)
    grey = paint.paint(x, "grey")
    assert (grey.spec.scale, grey.spec.lo, grey.spec.hi) == (colour.GREY, 0.2, 0.9)
    with pytest.raises(ValueError, match="unknown kind"):
        paint.spec("rainbow")


def test_the_hover_answer_is_coloured_by_paint(tmp_path):
    threads = torch.get_num_threads()
    try:
        backend.configure(Config(cache_dir=str(tmp_path)))
        pair = backend.resolve_pair(backend.default_pair_key())
        out = api.pixel_payload(pair["id"], ["weighted-average"], 40, 200, mode="magnitude", gamma=0.7,
                                window="full")["models"]["weighted-average"]
        r = backend.pixels(["weighted-average"], pair["id"], 40, 200)["weighted-average"]
        expected = paint.paint(r.ja, "derivative", "magnitude", 0.7)
        assert out["jmri"] == expected.uri and out["ticks"]["jmri"] == expected.ticks
    finally:
        torch.set_num_threads(threads)


def test_the_browser_config_names_components_of_the_page():
    config = layout.browser_config()
    assert config["route"] == api.ROUTE.lstrip("/") == ids.HOVER_ROUTE.lstrip("/")
    assert set(config["stores"].values()) <= set(ids.STORES)
    assert config["types"]["image"] == ids.IMAGE["jacobian"] and config["views"] == list(api.VIEWS)
    page = repr(layout.page([], [], layout.ViewState()))
    assert repr(ids.READOUT) in page and repr(ids.BROWSER_CONFIG) in page
