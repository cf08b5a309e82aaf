"""A colour PET on the page: inputs, fused images, the sheet and the fused-image download (issue 12).

API-level tests build a pair with a pseudo-colour ("hot") PET, store it as the upload
does, and read what the dashboard would send; one browser test uploads it through the
page and flips "Y only". Run with ``pytest --headless``.
"""
import base64
import io

import browser_helpers as browser
import numpy as np
import pytest
import torch
from PIL import Image

from dashboard import backend
from dashboard.config import Config
from dashboard.features import downloads
from dashboard.features import pair as pair_feature
from fusion.saliency import save_hdf5

SHAPE = (40, 48)
GREY_SAMPLE = "sample:axial-095"  # a bundled pair with a grey PET (the page opens on a colour one)


def hot(t: np.ndarray) -> np.ndarray:
    """A "hot" colour map: black, red, yellow, white; (H, W) in [0, 1] -> (H, W, 3) uint8."""
    rgb = np.clip(np.stack([3 * t, 3 * t - 1, 3 * t - 2], axis=-1), 0, 1)
    return np.rint(rgb * 255).astype(np.uint8)


def colour_pair_files(folder, shape=SHAPE) -> tuple[bytes, bytes]:
    """(MRI PNG, hot-colour PET PNG) bytes, also written to ``folder`` as mri.png and pet.png."""
    rows, cols = np.mgrid[0:shape[0], 0:shape[1]]
    mri = (np.random.default_rng(1).random(shape) * 200 + 30).astype(np.uint8)
    blob = np.exp(-((rows - shape[0] / 2) ** 2 + (cols - shape[1] / 3) ** 2) / (2 * 8.0 ** 2))
    out = []
    for name, image in (("mri.png", Image.fromarray(mri)), ("pet.png", Image.fromarray(hot(blob), "RGB"))):
        buffer = io.BytesIO()
        image.save(buffer, format="PNG")
        (folder / name).write_bytes(buffer.getvalue())
        out.append(buffer.getvalue())
    return out[0], out[1]


def decoded(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)))


def src_pixels(uri: str) -> np.ndarray:
    """An image ``src`` (PNG data URI) as an (H, W, channels) uint8 array (grey: 1 channel)."""
    array = decoded(base64.b64decode(uri.split(",", 1)[1]))
    return array[..., None] if array.ndim == 2 else array


def channel_spread(pixels: np.ndarray) -> int:
    """The largest difference between two colour channels of one pixel (0 for a grey PNG)."""
    if pixels.shape[-1] == 1:
        return 0
    rgb = pixels[..., :3].astype(int)
    return int((rgb.max(-1) - rgb.min(-1)).max())


def is_colour_image(pixels: np.ndarray) -> bool:
    return channel_spread(pixels) > 10


def is_grey_image(pixels: np.ndarray) -> bool:
    """Equal channels, up to the page's grey scale (Plotly's "gray" is up to 2 levels warm)."""
    return channel_spread(pixels) <= 2


@pytest.fixture
def service(tmp_path):
    threads = torch.get_num_threads()
    backend.configure(Config(cache_dir=str(tmp_path / "cache")))
    yield backend.service()
    backend.configure(Config(cache_dir=str(tmp_path / "cache")))  # close its hover workers
    torch.set_num_threads(threads)


def uploaded(tmp_path) -> dict:
    mri, pet = colour_pair_files(tmp_path)
    return backend.resolve_pair(backend.put_uploaded_pair(mri, "mri.png", pet, "pet.png"))


def test_an_uploaded_colour_pet_keeps_its_colour(service, tmp_path):
    pair = uploaded(tmp_path)
    assert pair["colour"] and backend.is_colour(pair["id"])
    shown = backend.pet_colour(pair["id"])
    original = decoded((tmp_path / "pet.png").read_bytes()) / 255
    np.testing.assert_allclose(shown, original, atol=1.5 / 255)  # the PET as uploaded, to 8-bit rounding
    _, pet_y = backend.pair_arrays(pair["id"])
    assert pet_y.min() == 0 and pet_y.max() == 1  # the networks see the scaled Y, as before
    # the same images, grey: another pair, shown as before
    grey = Image.open(tmp_path / "pet.png").convert("L")
    buffer = io.BytesIO()
    grey.save(buffer, format="PNG")
    grey_id = backend.put_uploaded_pair((tmp_path / "mri.png").read_bytes(), "mri.png", buffer.getvalue(), "g.png")
    assert grey_id != pair["id"] and not backend.is_colour(grey_id) and backend.pet_colour(grey_id) is None


def test_fused_png_is_rgb_for_a_colour_pet_and_grey_otherwise(service, tmp_path):
    pair = uploaded(tmp_path)
    data, name = downloads.fused_png("weighted-average", pair)
    rgb = decoded(data)
    assert name == f"weighted-average-{pair['id'][:8]}-fused.png" and rgb.shape == (*SHAPE, 3)
    assert is_colour_image(rgb)
    np.testing.assert_array_equal(rgb, np.rint(service.fused_colour("weighted-average", pair["id"]) * 255))
    # its luminance is the network's output on the PET's range (to 8-bit rounding), its chroma PET's
    lo, hi = backend.pair_colour(pair["id"])[1]
    fused_y = service.fuse("weighted-average", pair["id"])
    got = np.asarray(Image.fromarray(rgb).convert("YCbCr"), dtype=float) / 255
    np.testing.assert_allclose(got[..., 0], lo + fused_y * (hi - lo), atol=2 / 255)
    pet = np.asarray(Image.open(tmp_path / "pet.png").convert("YCbCr"), dtype=float) / 255
    unclipped = (rgb > 0).all(-1) & (rgb < 255).all(-1)
    np.testing.assert_allclose(got[..., 1:][unclipped], pet[..., 1:][unclipped], atol=3 / 255)

    y_data, y_name = downloads.fused_png("weighted-average", pair, y_only=True)
    assert y_name.endswith("-fused-y.png") and Image.open(io.BytesIO(y_data)).mode == "L"
    np.testing.assert_array_equal(decoded(y_data), np.rint(np.clip(fused_y, 0, 1) * 255))

    grey = backend.resolve_pair(GREY_SAMPLE)
    g_data, g_name = downloads.fused_png("weighted-average", grey)
    assert not grey["colour"] and g_name.endswith("-fused.png") and Image.open(io.BytesIO(g_data)).mode == "L"
    np.testing.assert_array_equal(decoded(g_data),
                                  np.rint(np.clip(service.fuse("weighted-average", grey["id"]), 0, 1) * 255))


def fused_tile(sheet: bytes) -> np.ndarray:
    """The first model's "Fused F" tile of a ``figures.sheet_png`` sheet (label 150 px, heading 52, pad 6)."""
    return decoded(sheet)[52 + 10:52 + 182, 156 + 10:156 + 182]


def test_sheet_shows_the_fused_image_in_colour_unless_y_only(service, tmp_path):
    pair = uploaded(tmp_path)
    version = {"models": ["weighted-average"]}
    sheet = downloads.figure_sheet(pair, version, None, "signed", False, 1.0, 1.0)
    assert is_colour_image(fused_tile(sheet))
    assert is_grey_image(fused_tile(downloads.figure_sheet(pair, version, None, "signed", False, 1, 1, True)))
    grey = backend.resolve_pair(GREY_SAMPLE)
    assert is_grey_image(fused_tile(downloads.figure_sheet(grey, version, None, "signed", False, 1.0, 1.0)))


def test_the_page_opens_on_a_colour_head_sample_unless_told_otherwise():
    from fusion import data

    key = backend.default_pair_key(Config())
    assert key == backend.SAMPLE_PREFIX + backend.DEFAULT_SAMPLE == "sample:head-axial-090"
    assert data.load_sample(backend.DEFAULT_SAMPLE).is_colour
    assert backend.default_pair_key(Config(default_pair="coronal-100")) == "sample:coronal-100"  # $FUSION_DASH_PAIR
    assert backend.default_pair_key(Config(default_pair="../axial-095")) == key  # not a sample: the default


def test_a_colour_sample_is_labelled_and_stored_with_its_colour(service, tmp_path, monkeypatch):
    from fusion import data

    grey = data.list_samples()[0]
    assert backend.sample_label(grey) == f"sample {grey}"  # a grey sample: its name alone
    colour_pair_files(tmp_path)
    (tmp_path / "mri.png").rename(tmp_path / "head-01_mri.png")
    (tmp_path / "pet.png").rename(tmp_path / "head-01_pet.png")
    monkeypatch.setattr(data, "SAMPLE_DIR", tmp_path)
    backend.sample_label.cache_clear()
    try:
        assert backend.sample_label("head-01") == "sample head-01 · colour PET"
        assert pair_feature.pair_options([], None) == [{"label": "sample head-01 · colour PET",
                                                      "value": "sample:head-01"}]
        pair = backend.resolve_pair("sample:head-01")
        assert pair["colour"] and is_colour_image(np.rint(backend.pet_colour(pair["id"]) * 255))
    finally:
        backend.sample_label.cache_clear()


def test_a_dense_result_of_a_colour_pair_opens_in_colour(service, tmp_path):
    pair = uploaded(tmp_path)
    save_hdf5(service.dense("weighted-average", pair["id"]), tmp_path / "wa.h5")  # the ⤓ download's file
    backend.configure(Config(cache_dir=str(tmp_path / "another-server")))
    opened = backend.open_hdf5((tmp_path / "wa.h5").read_bytes(), "wa.h5")
    assert opened["pair_id"] == pair["id"] and opened["installed"]  # the colour pair's id: chroma kept
    np.testing.assert_array_equal(backend.pet_colour(pair["id"]), service.pet_colour(pair["id"]))


# ------------------------------------------------------------------ in the browser
@pytest.mark.browser
def test_page_opens_on_the_colour_head_sample(dash_duo, start):
    css, wait = browser.css, browser.wait
    start(models=("weighted-average",))
    side = 256  # the bundled samples' size

    def head_in_colour():
        mri, pet = (src_pixels(dash_duo.find_element(f"#fs-input-{kind}").get_attribute("src"))
                    for kind in ("mri", "pet"))
        fused = src_pixels(dash_duo.find_element(css("img-fused", "weighted-average")).get_attribute("src"))
        return (all(x.shape[:2] == (side, side) for x in (mri, pet, fused)) and is_grey_image(mri)
                and is_colour_image(pet) and is_colour_image(fused))
    wait(head_in_colour, 60, "the default head sample's PET and fused image in colour")
    assert "head-axial-090 · colour PET" in dash_duo.find_element("#fs-pair-select").text
    assert dash_duo.find_element("#fs-y-only").get_attribute("disabled") is None


@pytest.mark.browser
def test_page_shows_a_colour_upload_in_colour_and_y_only_grey(dash_duo, start, tmp_path):
    click, css, downloaded, wait = browser.click, browser.css, browser.downloaded, browser.wait
    start(models=("weighted-average",), path="/?pair=" + GREY_SAMPLE)
    switch = "#fs-y-only"
    wait(lambda: dash_duo.find_element(switch).get_attribute("disabled") is not None, 30,
         "the switch disabled for the grey sample")
    mri, pet = colour_pair_files(tmp_path)
    dash_duo.find_element("#fs-upload-mri input[type=file]").send_keys(str(tmp_path / "mri.png"))
    dash_duo.find_element("#fs-upload-pet input[type=file]").send_keys(str(tmp_path / "pet.png"))
    dash_duo.wait_for_element("#fs-upload-ok", timeout=60)

    def shown():
        pet_src = dash_duo.find_element("#fs-input-pet").get_attribute("src")
        fused_src = dash_duo.find_element(css("img-fused", "weighted-average")).get_attribute("src")
        return src_pixels(pet_src), src_pixels(fused_src)

    def in_colour():
        pet_px, fused_px = shown()
        return pet_px.shape[:2] == SHAPE and fused_px.shape[:2] == SHAPE and all(map(is_colour_image, (pet_px,
                                                                                                        fused_px)))
    wait(in_colour, 60, "the uploaded PET and its fused image in colour")
    assert dash_duo.find_element(switch).get_attribute("disabled") is None
    assert "colour" in dash_duo.find_element("#fs-colour-note").text

    click(dash_duo, switch)
    wait(lambda: all(p.shape[:2] == SHAPE and is_grey_image(p) for p in shown()), 30, "Y only: both images grey")
    assert "y=1" in dash_duo.driver.current_url
    click(dash_duo, switch)
    wait(in_colour, 30, "colour again")

    click(dash_duo, css("fused-png", "weighted-average"))
    pair_id = backend.put_uploaded_pair(mri, "mri.png", pet, "pet.png")  # the same content: the same id
    fused = decoded(downloaded(dash_duo, f"weighted-average-{pair_id[:8]}-fused.png"))
    assert fused.shape == (*SHAPE, 3) and is_colour_image(fused)
