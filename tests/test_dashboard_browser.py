"""The dashboard in headless Chromium (dash_duo): hover, pin + URL, upload errors, regions, HDF5 files, downloads.

Run with ``pytest --headless``. The apps use the cheap weighted-average model
(plus FunFuseAn where a real receptive field matters) and a throw-away cache (``start`` and ``cache_dir``
are in conftest.py; the whole-image jobs' own tests are in test_dashboard_job_browser.py).
"""
import io
import re
import time

import numpy as np
import pytest
from browser_helpers import (
    click,
    css,
    downloaded,
    hover,
    png_bytes,
    readout_pixel,
    srcs,
    upload_pair,
    wait,
    wait_images,
)
from PIL import Image
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.keys import Keys

pytestmark = pytest.mark.browser


def test_hover_updates_every_panel_and_the_readout(dash_duo, start):
    start()
    wait_images(dash_duo, "img-jacobian", 4)
    before = srcs(dash_duo, "img-jacobian")
    start_pixel = readout_pixel(dash_duo)
    fused = dash_duo.find_element(css("img-fused", "funfusean"))

    def readout_at_target():
        # hover again on every try: images still loading can shift the layout under a single move
        hover(dash_duo, fused, 0.3, 0.6)
        row, col = readout_pixel(dash_duo)
        return (row, col) != start_pixel and abs(row - 0.6 * 256) <= 8 and abs(col - 0.3 * 256) <= 8
    wait(readout_at_target, 30, "the readout to follow the hover to (0.6, 0.3) of the image")
    wait(lambda: readout_pixel(dash_duo) == tuple(dash_duo.driver.execute_script(
        "return [window.__fsState.pixel.row, window.__fsState.pixel.col]")), 30, "the readout to match the cursor")
    row, col = readout_pixel(dash_duo)
    # FunFuseAn's Jacobians changed (weighted-average's 1 x 1 window is the same colour everywhere)
    wait(lambda: all(srcs(dash_duo, "img-jacobian")[k] != v for k, v in before.items() if "funfusean" in k),
         20, "FunFuseAn's Jacobian images to change")
    # every full-size image shows the crosshair at the same relative place, including the inputs
    lines = dash_duo.driver.execute_script(
        "return [...document.querySelectorAll('.fs-frame.fs-full')].filter(f => f.querySelector('img').src)"
        ".map(f => [getComputedStyle(f, '::before'), getComputedStyle(f, '::after'), f.getBoundingClientRect()])"
        ".map(([h, v, r]) => [h.display, v.display, parseFloat(h.top) / r.height, parseFloat(v.left) / r.width])")
    assert len(lines) >= 2 + 2 and all(h == v == "block" for h, v, _, _ in lines)
    for _, _, y, x in lines:  # drawn across the image at the pixel's centre
        assert (y, x) == (pytest.approx((row + 0.5) / 256, abs=2e-3), pytest.approx((col + 0.5) / 256, abs=2e-3))
    # the zoomed panels mark the pixel inside each model's own window; both models are in the readout
    marks = dash_duo.find_elements(css("mark"))
    assert len(marks) == 4 and all(m.value_of_css_property("display") == "block" for m in marks)
    table = dash_duo.find_element(".fs-readout-table").text
    assert "weighted-average" in table and "funfusean" in table
    assert "0.5" in table  # weighted average: dF/dMRI(p) = dF/dPET(p) = 0.5
    assert not [e for e in dash_duo.get_logs() if e["level"] == "SEVERE"]


def test_pin_arrow_keys_and_url_round_trip(dash_duo, start):
    start(models=("weighted-average",))
    fused = dash_duo.find_element(css("img-fused", "weighted-average"))
    hover(dash_duo, fused, 0.5, 0.25)
    ActionChains(dash_duo.driver, duration=0).click().perform()
    dash_duo.wait_for_element("#fs-pinned-badge", timeout=30)
    row, col = readout_pixel(dash_duo)
    # while pinned, hovering elsewhere does not move the pixel
    hover(dash_duo, fused, 0.9, 0.9)
    time.sleep(0.5)
    assert readout_pixel(dash_duo) == (row, col)
    # arrow keys step the pinned pixel
    ActionChains(dash_duo.driver).send_keys(Keys.ARROW_RIGHT).send_keys(Keys.ARROW_DOWN).perform()
    wait(lambda: readout_pixel(dash_duo) == (row + 1, col + 1), 30, "the arrow keys to step the pixel")
    # colour settings go to the URL too
    dash_duo.find_element("label[for='_dbcprivate_radioitems_fs-jac-mode_input_magnitude']").click()
    wait(lambda: "jac=magnitude" in dash_duo.driver.current_url, 30, "the URL to record the colour mode")
    url = dash_duo.driver.current_url
    assert f"px={row + 1},{col + 1}" in url and "models=weighted-average" in url
    # a fresh visit of the link reproduces the view
    dash_duo.driver.get("about:blank")
    dash_duo.driver.get(url)
    wait_images(dash_duo, "img-fused", 1)
    dash_duo.wait_for_element("#fs-pinned-badge", timeout=30)
    wait(lambda: readout_pixel(dash_duo) == (row + 1, col + 1), 30, "the linked pixel")
    assert dash_duo.find_element("#_dbcprivate_radioitems_fs-jac-mode_input_magnitude").is_selected()
    assert dash_duo.find_element("#fs-link").get_attribute("value").endswith(url.split("?", 1)[1])


def test_bad_upload_shows_its_message_and_the_page_keeps_working(dash_duo, start, tmp_path):
    start(models=("weighted-average",))
    bad = tmp_path / "notes.png"
    bad.write_text("this is not an image")
    dash_duo.find_element("#fs-upload-mri input[type=file]").send_keys(str(bad))
    dash_duo.wait_for_contains_text("#fs-upload-error", "notes.png", timeout=30)
    assert "not a readable image" in dash_duo.find_element("#fs-upload-error").text
    # nothing else broke: hovering still answers
    before = readout_pixel(dash_duo)
    hover(dash_duo, dash_duo.find_element(css("img-fused", "weighted-average")), 0.2, 0.2)
    wait(lambda: readout_pixel(dash_duo) != before, 30, "hover after a bad upload")
    # a good pair of another size is accepted and shown
    upload_pair(dash_duo, tmp_path)
    wait_images(dash_duo, "img-fused", 1)


def test_histogram_responds_to_a_region(dash_duo, start):
    start(models=("weighted-average",))
    click(dash_duo, "#fs-dense-run")
    wait_images(dash_duo, "img-dense", 4, timeout=180)
    dash_duo.wait_for_contains_text("#fs-hist", "brain mask", timeout=60)
    dash_duo.find_element("label[for='_dbcprivate_radioitems_fs-region-mode_input_box']").click()
    fused = dash_duo.find_element(css("img-fused", "weighted-average"))
    w, h = fused.size["width"], fused.size["height"]
    hover(dash_duo, fused, 0.2, 0.2)
    ActionChains(dash_duo.driver, duration=0).click_and_hold().move_by_offset(int(0.2 * w), int(0.25 * h)) \
        .release().perform()
    dash_duo.wait_for_contains_text("#fs-hist", "box region", timeout=60)
    table = dash_duo.find_element("#fs-region-table").text
    assert "box region" in table and "whole image" in table
    # the drawn region is outlined on every full-size image
    paths = dash_duo.driver.execute_script(
        "return [...document.querySelectorAll('svg.fs-region path')].map(p => p.getAttribute('d'))")
    assert len(paths) >= 3 and len(set(paths)) == 1 and paths[0].startswith("M")
    dash_duo.find_element("#fs-region-clear").click()
    dash_duo.wait_for_contains_text("#fs-hist", "brain mask", timeout=60)


def test_empty_state_and_model_card(dash_duo, start):
    start(models=("weighted-average", "funfusean"))
    dash_duo.find_element(css("card-btn", "funfusean")).click()
    dash_duo.wait_for_contains_text("#fs-card-body", "receptive field", timeout=30)
    dash_duo.find_element(".modal .btn-close").click()
    for box in dash_duo.find_elements("#fs-models input:checked"):
        box.click()
    dash_duo.wait_for_element("#fs-no-models", timeout=30)
    assert "No model selected" in dash_duo.find_element("#fs-no-models").text
    wait(lambda: "models=&" in dash_duo.driver.current_url, 30, "the URL to record no models")
    # the inputs and readout still answer without any model
    before = readout_pixel(dash_duo)
    hover(dash_duo, dash_duo.find_element("#fs-input-mri"), 0.7, 0.4)
    wait(lambda: readout_pixel(dash_duo) != before, 30, "the readout without models")


# ------------------------------------------------------------------ opening HDF5, downloads, cancel
def dense_file(path, model: str, seed: int, checkpoint="default", side: int = 32):
    """A dense result written as ``python -m fusion saliency`` does, on a small random pair."""
    from fusion.saliency import save_hdf5
    from fusion.serving import SaliencyService

    svc = SaliencyService(cache_dir=path.parent / f"cache-{path.stem}", checkpoint=checkpoint)
    rng = np.random.default_rng(seed)
    pair_id = svc.put_pair(rng.random((side, side)), rng.random((side, side)))
    save_hdf5(svc.dense(model, pair_id), path)
    return path


def open_file(dash_duo, path):
    dash_duo.find_element("#fs-upload-h5 input[type=file]").send_keys(str(path))


def mri_src(dash_duo) -> str:
    return dash_duo.find_element("#fs-input-mri").get_attribute("src")


def test_open_a_dense_result_from_hdf5(dash_duo, start, tmp_path):
    import h5py

    from dashboard import backend

    good = dense_file(tmp_path / "funfusean.h5", "funfusean", seed=7)
    other_weights = dense_file(tmp_path / "fresh.h5", "funfusean", seed=8, checkpoint=None)
    (tmp_path / "notes.h5").write_text("this is not HDF5")
    (tmp_path / "cut.h5").write_bytes(good.read_bytes()[:5000])
    hostile = tmp_path / "hostile.h5"  # a map whose data would be read from a file of the server
    hostile.write_bytes(good.read_bytes())
    with h5py.File(hostile, "r+") as f:
        del f["maps/fused"]
        f["maps"].create_dataset("fused", (32, 32), np.float32, external=[("/etc/passwd", 0, 4096)])
    start(models=("weighted-average",))
    sample = mri_src(dash_duo)
    for bad, message in ((tmp_path / "notes.h5", "not a readable HDF5 file"),
                         (tmp_path / "cut.h5", "not a readable HDF5 file"),
                         (hostile, "outside the file (refused)")):
        open_file(dash_duo, bad)
        dash_duo.wait_for_contains_text("#fs-upload-error", bad.name, timeout=30)
        assert message in dash_duo.find_element("#fs-upload-error").text
    assert mri_src(dash_duo) == sample  # nothing else changed, and hover still answers
    before = readout_pixel(dash_duo)
    hover(dash_duo, dash_duo.find_element(css("img-fused", "weighted-average")), 0.2, 0.3)
    wait(lambda: readout_pixel(dash_duo) != before, 30, "hover after a refused file")

    # a good file: its pair is shown, its model joins the grid with its maps, and no job runs
    open_file(dash_duo, good)
    dash_duo.wait_for_contains_text("#fs-upload-ok", "whole-image maps of funfusean", timeout=60)
    wait(lambda: Image.open(io.BytesIO(png_bytes(mri_src(dash_duo)))).size == (32, 32), 30, "the file's MRI")
    wait_images(dash_duo, "img-fused", 2)
    wait(lambda: "ready" in dash_duo.find_element(css("status", "funfusean")).text, 60, "funfusean's maps")
    wait(lambda: all(s.startswith("data:image/png") for k, s in srcs(dash_duo, "img-dense").items()
                     if "funfusean" in k), 60, "funfusean's dense images")
    dash_duo.wait_for_contains_text("#fs-hist", "funfusean", timeout=60)
    assert dash_duo.find_element("#fs-dense-cancel").get_attribute("disabled") is not None  # no job
    assert "not computed" in dash_duo.find_element(css("status", "weighted-average")).text
    pair_id = re.search(r"pair=(\w+)", dash_duo.driver.current_url).group(1)
    assert backend.service().cached_dense("funfusean", pair_id) is not None
    assert "file funfusean.h5" in dash_duo.find_element("#fs-pair-select").text

    # computed with other weights: the pair opens, the maps do not, and the message says why
    shown = mri_src(dash_duo)
    open_file(dash_duo, other_weights)
    dash_duo.wait_for_contains_text("#fs-upload-warning", "other weights of funfusean", timeout=60)
    wait(lambda: mri_src(dash_duo) != shown, 30, "the pair of the file with other weights")
    wait(lambda: "not computed" in dash_duo.find_element(css("status", "funfusean")).text, 60,
         "funfusean without maps on that pair")


def test_downloads_png_csv_and_hdf5(dash_duo, start):
    import csv

    from dashboard import backend
    from fusion import data
    from fusion.saliency import load_hdf5

    start(models=("weighted-average",))
    click(dash_duo, "#fs-dense-run")
    wait_images(dash_duo, "img-dense", 4, timeout=180)
    dash_duo.wait_for_contains_text("#fs-hist", "brain mask", timeout=60)

    click(dash_duo, "#fs-dl-png")
    png = downloaded(dash_duo, "fusion-saliency.png")
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    sheet = Image.open(io.BytesIO(png))
    tile, pad, rows = 192, 6, 6  # fused, two Jacobians, G_MRI, G_PET, MRI share (figures.sheet_png)
    assert sheet.size == (150 + tile + 2 * pad, 52 + rows * (tile + pad) + pad)
    y_gmri = 52 + 3 * (tile + pad) + tile // 2
    assert sheet.convert("RGB").getpixel((150 + pad + tile // 2, y_gmri)) != (255, 255, 255)  # a map, not a blank

    click(dash_duo, "#fs-dl-csv")
    table = list(csv.DictReader(io.StringIO(downloaded(dash_duo, "mri-share-statistics.csv").decode())))
    assert list(table[0])[:5] == ["model", "region", "pixels", "mean_share", "mri_dominated"]
    assert {"EN", "VIF", "Qabf", "SSIM", "PSNR"} <= set(table[0]) and float(table[0]["SSIM"]) > 0
    regions = {r["region"]: r for r in table if r["model"] == "weighted-average"}
    assert set(regions) == {"whole image", "brain mask"} and int(regions["whole image"]["pixels"]) == 256 * 256
    assert 0 < int(regions["brain mask"]["pixels"]) < 256 * 256
    assert all(float(r["mean_share"]) == pytest.approx(0.5) for r in regions.values())  # w = 0.5: equal shares

    click(dash_duo, css("h5", "weighted-average"))
    pair_id = backend.resolve_pair(backend.default_pair_key())["id"]
    name = f"weighted-average-{pair_id[:8]}.h5"
    result = load_hdf5(io.BytesIO(downloaded(dash_duo, name)))
    assert result.meta["model"] == "weighted-average" and result.meta["pair_id"] == pair_id
    assert result.meta["weights_hash"] == backend.service().weights_hash("weighted-average")
    np.testing.assert_allclose(result.guidance_a, 0.5)
    sample = data.load_sample(backend.default_pair_key()[len(backend.SAMPLE_PREFIX):])
    for got, want in zip(result.inputs, sample, strict=True):
        np.testing.assert_array_equal(got, want)
