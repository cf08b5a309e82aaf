"""Whole-image jobs in headless Chromium (dash_duo): progress, preview, cancel, and the scatter they feed.

Run with ``pytest --headless``. The apps use FunFuseAn on small uploaded pairs and a throw-away cache
(``start`` and ``cache_dir`` are in conftest.py).
"""
import re
import time

import numpy as np
import pytest
from browser_helpers import click, css, hover, job_processes, readout_pixel, srcs, upload_pair, wait, wait_images

pytestmark = pytest.mark.browser


def test_background_job_reports_progress_and_finishes(dash_duo, start, tmp_path, monkeypatch):
    from dashboard.features import grid as grid_feature

    start(models=("funfusean",))
    # One click right after an upload, while the grid is still being re-rendered for the new pair
    # (slowed down here so that the race always happens): the job must run, for the new pair.
    grid = grid_feature.grid
    monkeypatch.setattr(grid_feature, "grid", lambda *args: (time.sleep(2), grid(*args))[1])
    upload_pair(dash_duo, tmp_path, shape=(48, 48))
    click(dash_duo, "#fs-dense-run")
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


#: Where the scatter's "hovered pixel" marker of FunFuseAn is: [G_MRI, G_PET], or null.
MARKER = ("const gd = document.querySelector('#fs-scatter .js-plotly-plot');"
          "const t = gd && (gd.data || []).find(t => t.meta && t.meta.hovered === 'funfusean');"
          "return t ? [t.x[0], t.y[0]] : null;")


def test_scatter_marks_the_selected_pixel_without_a_dash_update(dash_duo, start, tmp_path):
    from dashboard import backend

    start(models=("funfusean",))
    upload_pair(dash_duo, tmp_path, shape=(48, 48))
    click(dash_duo, "#fs-dense-run")
    wait(lambda: "ready" in dash_duo.find_element(css("status", "funfusean")).text, 300, "the dense job to finish")
    wait(lambda: dash_duo.find_element("#fs-dense-cancel").get_attribute("disabled") is not None, 30, "the job's end")
    maps = backend.dense_maps("funfusean", re.search(r"pair=(\w+)", dash_duo.driver.current_url).group(1))

    def marked():  # the marker sits at (G_MRI, G_PET) of the pixel in the readout
        row, col = readout_pixel(dash_duo)
        got = dash_duo.driver.execute_script(MARKER)
        return got is not None and np.allclose(got, (maps["guidance_a"][row, col], maps["guidance_b"][row, col]),
                                               rtol=1e-4, atol=1e-7)
    wait(marked, 30, "the new scatter to mark the pixel selected before it was drawn")
    for fx, fy in ((0.3, 0.6), (0.8, 0.15)):
        before = dash_duo.driver.execute_script(MARKER)
        dash_duo.driver.execute_script("performance.clearResourceTimings()")

        def answered(fx=fx, fy=fy):  # found and hovered again while the page settles
            hover(dash_duo, dash_duo.find_element(css("img-fused", "funfusean")), fx, fy)
            return np.abs(np.subtract(readout_pixel(dash_duo), (int(fy * 48), int(fx * 48)))).max() <= 1
        wait(answered, 30, "the hover's readout")
        wait(lambda before=before: marked() and dash_duo.driver.execute_script(MARKER) != before, 10,
             "the marker to move")
        time.sleep(1)  # the cursor rests: the page asks Dash for nothing
        assert dash_duo.driver.execute_script(
            "return performance.getEntriesByType('resource').filter(e => e.name.includes('_dash-update')).length") == 0


def test_cancel_stops_the_job_and_a_later_compute_works(dash_duo, start, tmp_path):
    from dashboard import backend

    start(models=("funfusean",))
    upload_pair(dash_duo, tmp_path, shape=(96, 96))  # about 20 s of dense work on this machine
    before = job_processes()
    click(dash_duo, "#fs-dense-run")
    wait(lambda: dash_duo.find_elements(css("status", "funfusean") + " .progress"), 60, "the job's progress")
    jobs = job_processes() - before
    assert jobs, "the dense job runs in a process of its own"
    # the page stays responsive while the job runs: a hover still gets its Jacobians from the server
    jacobians = srcs(dash_duo, "img-jacobian")
    fused = dash_duo.find_element(css("img-fused", "funfusean"))

    def hover_answered():
        hover(dash_duo, fused, 0.7, 0.2)
        row, col = readout_pixel(dash_duo)
        near = abs(row - 0.2 * 96) <= 4 and abs(col - 0.7 * 96) <= 4
        return near and all(srcs(dash_duo, "img-jacobian")[k] != v for k, v in jacobians.items())
    wait(hover_answered, 30, "a hover to be answered while the dense job runs")
    # the job's preview: put into the model's maps by the browser, with its note
    wait(lambda: all(s.startswith("data:image/png") for s in srcs(dash_duo, "img-dense").values()), 30,
         "the running job's preview in every whole-image map")
    wait(lambda: all("preview" in e.text for e in dash_duo.find_elements(css("empty", "funfusean"))), 10,
         "the preview's note")
    # the job's counts reach the progress bar between the model's states (of which only "computing" and the
    # preview's start redraw it), and it never goes back
    shown = []

    def advanced():
        bars = dash_duo.find_elements(css("status", "funfusean") + " .progress-bar")
        shown.extend(float(bar.get_attribute("aria-valuenow") or 0) for bar in bars)
        return len(set(shown)) >= 3
    wait(advanced, 60, "the progress bar to advance")
    assert shown == sorted(shown)
    assert job_processes() & jobs, "the job was still running during that hover, its preview and its progress"
    click(dash_duo, "#fs-dense-cancel")
    wait(lambda: not (job_processes() & jobs), 30, "the job's process to stop")
    dash_duo.wait_for_contains_text(css("status", "funfusean"), "cancelled at", timeout=30)
    at = int(re.search(r"cancelled at (\d+)%", dash_duo.find_element(css("status", "funfusean")).text).group(1))
    assert at >= int(shown[-1])  # as far as the bar got, at least
    wait(lambda: dash_duo.find_element("#fs-dense-run").get_attribute("disabled") is None, 30, "Compute enabled")
    assert dash_duo.find_element("#fs-dense-cancel").get_attribute("disabled") is not None
    assert all("cancelled" in e.text for e in dash_duo.find_elements(css("empty", "funfusean")))
    assert all(not s for s in srcs(dash_duo, "img-dense").values())  # no stale preview left
    pair_id = re.search(r"pair=(\w+)", dash_duo.driver.current_url).group(1)
    time.sleep(2)
    assert backend.service().cached_dense("funfusean", pair_id) is None  # it never finished
    assert "cancelled at" in dash_duo.find_element(css("status", "funfusean")).text

    click(dash_duo, "#fs-dense-run")
    wait(lambda: "ready" in dash_duo.find_element(css("status", "funfusean")).text, 300, "the new job to finish")
    wait_images(dash_duo, "img-dense", 4)
    assert backend.service().cached_dense("funfusean", pair_id) is not None
