"""Helpers of the browser tests (headless Chromium through dash_duo): selectors, waits, pointer moves,
uploads, downloads and the app's background-job processes."""
from __future__ import annotations

import base64
import io
import re
import time

import numpy as np
from PIL import Image
from selenium.common.exceptions import ElementClickInterceptedException
from selenium.webdriver.common.actions.action_builder import ActionBuilder


def css(kind: str, model: str | None = None, view: str | None = None) -> str:
    """CSS selector of a pattern-matching component (its DOM id is the JSON of the dict id)."""
    sel = f'[id*=\'"type":"{kind}"\']'
    if model:
        sel += f'[id*=\'"model":"{model}"\']'
    if view:
        sel += f'[id*=\'"view":"{view}"\']'
    return sel


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


def click(dash_duo, selector: str, attempts: int = 3):
    """Scroll an element to the middle of the window, then click it (the controls column scrolls on its own).

    A panel that re-renders between the scroll and the click can move the element out of view
    (seen in CI: "not clickable at point (615, -29)", and three times in a row at (615, -70)
    while a whole-image result was drawn); then scroll and click again, and in the end dispatch
    the click from JavaScript, which does not depend on where the element is drawn.
    """
    for _ in range(attempts):
        element = dash_duo.find_element(selector)
        dash_duo.driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", element)
        try:
            element.click()
            return
        except ElementClickInterceptedException:
            time.sleep(0.5)
    dash_duo.driver.execute_script("arguments[0].click()", dash_duo.find_element(selector))


def srcs(dash_duo, kind: str) -> dict:
    return {e.get_attribute("id"): e.get_attribute("src") for e in dash_duo.find_elements(css(kind))}


def png_bytes(uri: str) -> bytes:
    """The bytes of a data URI's PNG."""
    return base64.b64decode(uri.split(",", 1)[1])


def upload_pair(dash_duo, tmp_path, shape=(40, 48)):
    """Upload a small random MRI/PET pair through the page and wait until it is shown."""
    for name, seed in (("mri.png", 1), ("pet.png", 2)):
        array = (np.random.default_rng(seed).random(shape) * 255).astype(np.uint8)
        Image.fromarray(array).save(tmp_path / name)
    dash_duo.find_element("#fs-upload-mri input[type=file]").send_keys(str(tmp_path / "mri.png"))
    dash_duo.find_element("#fs-upload-pet input[type=file]").send_keys(str(tmp_path / "pet.png"))
    dash_duo.wait_for_element("#fs-upload-ok", timeout=60)
    wait(lambda: Image.open(io.BytesIO(png_bytes(dash_duo.find_element("#fs-input-mri").get_attribute("src")))).size
         == (shape[1], shape[0]), 30, "the uploaded MRI to show")


def downloaded(dash_duo, name: str, timeout: float = 60) -> bytes:
    """The bytes of a file the browser downloaded (dash_duo's download directory)."""
    from pathlib import Path

    path = Path(dash_duo.download_path) / name
    wait(lambda: path.exists() and not list(path.parent.glob("*.crdownload")), timeout, f"the download {name}")
    return path.read_bytes()


def job_processes() -> set[int]:
    """Live background-job processes: those forked by the app's forkserver (``dashboard.jobs``)."""
    import psutil

    def forkserver(process) -> bool:
        return "forkserver" in " ".join(process.cmdline())

    jobs = set()
    for child in psutil.Process().children(recursive=True):
        try:
            if forkserver(child) and forkserver(child.parent()) and child.status() != psutil.STATUS_ZOMBIE:
                jobs.add(child.pid)
        except psutil.Error:
            pass
    return jobs
