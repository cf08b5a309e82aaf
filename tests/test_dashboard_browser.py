"""The dashboard in headless Chromium (dash_duo): hover, pin + URL, upload errors, background jobs, regions.

Run with ``pytest --headless``. The apps use the cheap weighted-average model
(plus FunFuseAn where a real receptive field matters) and a throw-away cache.
"""
import io
import re
import time

import numpy as np
import pytest
from PIL import Image
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.actions.action_builder import ActionBuilder
from selenium.webdriver.common.keys import Keys

from dashboard.config import Config

pytestmark = pytest.mark.browser


def css(kind: str, model: str | None = None, view: str | None = None) -> str:
    """CSS selector of a pattern-matching component (its DOM id is the JSON of the dict id)."""
    sel = f'[id*=\'"type":"{kind}"\']'
    if model:
        sel += f'[id*=\'"model":"{model}"\']'
    if view:
        sel += f'[id*=\'"view":"{view}"\']'
    return sel


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    """One service cache for these tests: models are probed once, as on a real server."""
    return tmp_path_factory.mktemp("fusion-cache")


@pytest.fixture
def start(dash_duo, cache_dir):
    """Start the dashboard with ``models`` selected and wait until the fused images show."""
    import torch

    import app as app_module

    threads = torch.get_num_threads()  # the app sets its own; give the other tests theirs back

    def run(models=("weighted-average", "funfusean"), path=""):
        config = Config(cache_dir=str(cache_dir), default_models=tuple(models), max_scatter_points=2000)
        dash_app = app_module.create_app(config)
        dash_duo.start_server(dash_app)
        if path:
            dash_duo.driver.get(dash_duo.server_url + path)
        wait_images(dash_duo, "img-fused", len(models))
        return dash_app

    yield run
    torch.set_num_threads(threads)


def wait_images(dash_duo, kind: str, count: int, timeout: float = 180):
    """Wait until ``count`` images of ``kind`` have a PNG source."""
    def ready():
        srcs = [e.get_attribute("src") or "" for e in dash_duo.find_elements(css(kind))]
        return len(srcs) == count and all(s.startswith("data:image/png") for s in srcs)
    wait(ready, timeout, f"{count} images {kind} with a PNG source")


def wait(condition, timeout: float, what: str):
    end = time.time() + timeout
    while time.time() < end:
        try:
            if condition():
                return
        except Exception:  # noqa: BLE001 - the DOM is being re-rendered; try again
            pass
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def readout_pixel(dash_duo) -> tuple[int, int]:
    text = dash_duo.find_element("#fs-readout-head").text
    row, col = re.search(r"row (\d+), col (\d+)", text).groups()
    return int(row), int(col)


def hover(dash_duo, element, fx: float, fy: float):
    """One pointer move to the fraction (fx, fy) of ``element`` (viewport coordinates: the origin of
    move_to_element_with_offset differs between Selenium versions)."""
    dash_duo.driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", element)
    x, y = dash_duo.driver.execute_script("const r = arguments[0].getBoundingClientRect();"
                                          "return [r.left + arguments[1] * r.width, r.top + arguments[2] * r.height]",
                                          element, fx, fy)
    actions = ActionBuilder(dash_duo.driver, duration=0)
    actions.pointer_action.move_to_location(int(x), int(y))
    actions.perform()


def srcs(dash_duo, kind: str) -> dict:
    return {e.get_attribute("id"): e.get_attribute("src") for e in dash_duo.find_elements(css(kind))}


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
    tops = dash_duo.driver.execute_script(
        "return [...document.querySelectorAll('.fs-frame.fs-full .fs-ch')].map(e => e.style.display + e.style.top)")
    assert len(tops) >= 2 + 2 and len(set(tops)) == 1 and tops[0].startswith("block")
    assert float(tops[0][len("block"):-1]) == pytest.approx(100 * (row + 0.5) / 256)
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


def upload_pair(dash_duo, tmp_path, shape=(40, 48)):
    """Upload a small random MRI/PET pair through the page and wait until it is shown."""
    for name, seed in (("mri.png", 1), ("pet.png", 2)):
        array = (np.random.default_rng(seed).random(shape) * 255).astype(np.uint8)
        Image.fromarray(array).save(tmp_path / name)
    dash_duo.find_element("#fs-upload-mri input[type=file]").send_keys(str(tmp_path / "mri.png"))
    dash_duo.find_element("#fs-upload-pet input[type=file]").send_keys(str(tmp_path / "pet.png"))
    dash_duo.wait_for_element("#fs-upload-ok", timeout=60)
    wait(lambda: Image.open(io.BytesIO(_png(dash_duo.find_element("#fs-input-mri").get_attribute("src")))).size
         == (shape[1], shape[0]), 30, "the uploaded MRI to show")


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


def _png(uri: str) -> bytes:
    import base64

    return base64.b64decode(uri.split(",", 1)[1])


def test_background_job_reports_progress_and_finishes(dash_duo, start, tmp_path, monkeypatch):
    import dashboard.callbacks

    start(models=("funfusean",))
    # One click right after an upload, while the grid is still being re-rendered for the new pair
    # (slowed down here so that the race always happens): the job must run, for the new pair.
    grid = dashboard.callbacks.grid
    monkeypatch.setattr(dashboard.callbacks, "grid", lambda *args: (time.sleep(2), grid(*args))[1])
    upload_pair(dash_duo, tmp_path, shape=(48, 48))
    dash_duo.find_element("#fs-dense-run").click()
    seen = set()

    def finished():
        text = dash_duo.find_element(css("status", "funfusean")).text
        if dash_duo.find_elements(css("status", "funfusean") + " .progress"):
            seen.add("progress")
        if "preview" in dash_duo.find_element("#fs-grid").text:
            seen.add("preview")
        return "ready" in text
    wait(finished, 300, "the dense job to finish")
    assert "progress" in seen
    wait_images(dash_duo, "img-dense", 4)
    assert dash_duo.find_element("#fs-dense-cancel").get_attribute("disabled") is not None
    dash_duo.wait_for_contains_text("#fs-hist", "funfusean", timeout=60)
    # the next visit is served from the shared cache: no job needed
    assert "pair=sample" not in dash_duo.driver.current_url  # the uploaded pair is in the link
    dash_duo.driver.refresh()
    wait_images(dash_duo, "img-dense", 4, timeout=90)
    assert "shared pair" in dash_duo.find_element("#fs-pair-select").text  # the linked upload, not a sample
    assert "ready" in dash_duo.find_element(css("status", "funfusean")).text


def test_histogram_responds_to_a_region(dash_duo, start):
    start(models=("weighted-average",))
    dash_duo.find_element("#fs-dense-run").click()
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
