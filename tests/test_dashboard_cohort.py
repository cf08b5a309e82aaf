"""The cohort on the page: "Compute all samples" and its statistics CSV (issue 13).

A statistics row against an independent computation; a second run of the cohort job computes
nothing; a cohort job's place in line goes to its own store; then the page in headless Chromium
(``pytest --headless``) with the two fast models on every bundled sample: Cancel stops the job, the
next run goes on from there with its progress bar moving monotonically to the summary, the CSV has
one row per (sample, model), a further run only finds cached maps, and another sample then shows its
maps without a job.
"""
from __future__ import annotations

import csv
import io
import itertools
import math
import os
import re

import diskcache
import numpy as np
import pytest
from browser_helpers import click, css, downloaded, job_processes, wait, wait_images

from dashboard import backend, dense_job, ids, jobs
from dashboard.config import Config
from fusion import data, fanout
from fusion.cohort import COLUMNS, failed_row, statistics_csv, statistics_row
from fusion.serving import SaliencyService

MODELS = ("weighted-average", "adaptive-average")


# ------------------------------------------------------------------ the row of statistics.csv
def test_statistics_row_matches_an_independent_computation(tmp_path):
    """adaptive-average F = (A² + B²) / (A + B): its MRI share dF/dA / (|dF/dA| + |dF/dB|) in closed form."""
    pair = data.load_sample("head-axial-090")
    svc = SaliencyService(cache_dir=tmp_path / "cache")
    pair_id = svc.put_pair(pair.mri[0:48, 100:140], pair.pet[0:48, 100:140])  # the top of the head
    a, b = svc.get_pair(pair_id)  # as stored (each image scaled to [0, 1])
    dense = svc.dense("adaptive-average", pair_id)
    row = statistics_row("edge", "adaptive-average", dense, a, threshold=0.1, file="edge.h5")

    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    s = a64 + b64
    da, db = np.abs((a64**2 + 2 * a64 * b64 - b64**2) / s**2), np.abs((b64**2 + 2 * a64 * b64 - a64**2) / s**2)
    mask = a64 > 0.1
    assert 0 < mask.sum() < mask.size
    share = (da / (da + db))[mask]
    assert set(row) == set(COLUMNS) and row["pair"] == "edge" and row["file"] == "edge.h5" and row["error"] == ""
    assert row["mean_mri_share"] == pytest.approx(share.mean(), abs=1e-5)
    assert row["mri_dominated"] == pytest.approx((share > 0.5).mean(), abs=2 / mask.sum())
    assert 0 < row["mri_dominated"] < 1 and row["method"] == str(dense.method)

    table = list(csv.DictReader(io.StringIO(statistics_csv([row, failed_row("gone", "masknet", "boom")]))))
    assert tuple(table[0]) == COLUMNS and float(table[0]["mean_mri_share"]) == row["mean_mri_share"]
    assert table[1]["error"] == "boom" and table[1]["mean_mri_share"] == ""


# ------------------------------------------------------------------ the job, called directly
@pytest.fixture
def two_samples(tmp_path, monkeypatch):
    """The backend on a fresh cache, computing in this process only (not niced: that could not be undone),
    with two bundled samples."""
    import torch

    threads = torch.get_num_threads()
    backend.configure(Config(cache_dir=str(tmp_path / "cache"), hover_processes=0, dense_workers=1))
    monkeypatch.setattr(backend.data, "list_samples", lambda: ["axial-072", "coronal-100"])
    monkeypatch.setattr(fanout, "NICENESS", None)
    yield
    backend.configure(Config(cache_dir=str(tmp_path / "cache"), hover_processes=0))
    torch.set_num_threads(threads)


def test_a_second_cohort_run_computes_nothing(two_samples, monkeypatch):
    from dashboard.features import cohort

    reports = []
    request = {"models": ["weighted-average", "not-a-model"], "t": 1.0}
    first = cohort.run_cohort(reports.append, request)
    assert first["state"] == "done" and first["total"] == 2 and first["computed"] == 2 and first["cached"] == 0
    assert first["models"] == ["weighted-average"] and not first["failed"]  # unknown names never reach the job
    values = [r["value"] for r in reports]
    assert values == sorted(values) and values[-1] == 100.0
    svc = backend.service()
    assert svc.computed["dense"] == 2  # merged here (one process: no helpers)
    units = [(m, p) for _, m, p in backend.cohort_units(["weighted-average"])]
    assert all(svc.has_dense(*u) for u in units) and backend.cohort_cached(["weighted-average"]) == (2, 2)
    assert fanout.plan_tasks(svc, units, 1) == []  # the fan-out itself would drop them too

    def no_fan_out(*args, **kwargs):
        raise AssertionError("a cached unit was sent to the fan-out")
    monkeypatch.setattr(dense_job, "fan_out", no_fan_out)
    computed = dict(svc.computed)
    again = cohort.run_cohort(reports.append, {**request, "t": 2.0})
    assert again["computed"] == 0 and again["cached"] == 2 and again["value"] == 100.0 and not again["failed"]
    assert svc.computed == computed
    table = list(csv.DictReader(io.StringIO(backend.cohort_csv(["weighted-average"], 0.1))))
    assert [r["pair"] for r in table] == ["axial-072", "coronal-100"]
    assert all(float(r["mean_mri_share"]) == pytest.approx(0.5) for r in table)  # w = 0.5: equal shares
    with pytest.raises(ValueError):
        backend.cohort_models("weighted-average")


# ------------------------------------------------------------------ its place in line
def waiting(*args):
    """A background callback that never runs here (its job is never dispatched)."""


def test_a_cohort_jobs_place_in_line_goes_to_its_own_store(tmp_path, monkeypatch):
    config = Config(cache_dir=str(tmp_path / "cache"), jobs_total=1, jobs_per_user=1)
    config.jobs_dir.mkdir(parents=True)
    manager = jobs.DiskcacheManager(diskcache.Cache(str(config.jobs_dir)), config)
    tagged = jobs.news_to(ids.COHORT_JOB)(lambda *args: None)
    manager.register("compute", waiting, False)
    manager.register("cohort", tagged, False)
    monkeypatch.setattr(manager, "dispatch", lambda *args: os.getpid())  # a live "process", nothing started
    manager.call_job_fn("k1", manager.func_registry["compute"], [], {})  # one user ("local"), one slot
    manager.call_job_fn("k2", manager.func_registry["cohort"], [], {})
    assert manager.job_running("k2") and manager.job_running("k1")
    assert manager.get_updated_props("k2") == {ids.COHORT_JOB: {"data": {
        "state": "waiting", "place": 1, "why": "your other job must finish first (1 per user)"}}}
    assert manager.get_updated_props("k1") == {jobs.JOB_STORE: {"data": {"state": "running"}}}


# ------------------------------------------------------------------ the page
def choose(dash_duo, dropdown: str, label: str) -> None:
    """Open a dropdown and pick the option ``label`` (clicked from JavaScript: the menu's search box can
    cover the option where the page is scrolled)."""
    click(dash_duo, dropdown)

    def pick() -> bool:
        for option in dash_duo.find_elements(".dash-dropdown-option"):
            if option.text == label:
                dash_duo.driver.execute_script("arguments[0].click()", option)
                return True
        return False
    wait(pick, 30, f"the option {label}")


@pytest.mark.browser
def test_compute_all_samples_then_the_csv_and_any_sample_at_once(dash_duo, tmp_path):
    import torch

    import app as app_module

    threads = torch.get_num_threads()
    try:
        config = Config(cache_dir=str(tmp_path / "cache"), default_models=MODELS, hover_processes=0,
                        max_scatter_points=2000)
        dash_app = app_module.create_app(config)
        dash_duo.start_server(dash_app)
        wait_images(dash_duo, "img-fused", len(MODELS))
        samples = data.list_samples()
        total = len(samples) * len(MODELS)
        assert dash_duo.find_element(f"#{ids.COHORT_CSV}").get_attribute("disabled") is not None
        # As a server does at start: plan the models at the samples' size. A job killed while it plans a
        # model leaves that plan's lease to its expiry (minutes), which the run after Cancel would wait for.
        svc = backend.service()
        for future in svc.plan_ahead(MODELS, [(256, 256)]):
            future.result(timeout=600)
        assert all(svc.planned(m, 256, 256) for m in MODELS)

        # Cancel once a unit is finished: the job's processes stop and the page says where it stopped
        before = job_processes()
        click(dash_duo, f"#{ids.COHORT_RUN}")
        bar = f"document.querySelector('#{ids.COHORT_BAR} .progress-bar, .progress-bar#{ids.COHORT_BAR}')"

        def bar_label() -> str:
            return dash_duo.driver.execute_script(f"const b = {bar}; return b ? b.textContent : ''") or ""
        wait(lambda: re.fullmatch(rf"[1-9]\d* of {total}", bar_label()), 600, "a first finished unit")
        running = job_processes() - before
        assert running, "the cohort job runs in processes of its own"
        click(dash_duo, f"#{ids.COHORT_CANCEL}")
        wait(lambda: not (job_processes() & running), 60, "the cohort job's processes to stop")
        dash_duo.wait_for_contains_text(f"#{ids.COHORT_SUMMARY}", "Cancelled at", timeout=60)

        # again: it goes on where it stopped, its bar moving to the summary and never back
        wait(lambda: dash_duo.find_element(f"#{ids.COHORT_RUN}").get_attribute("disabled") is None, 60,
             "Compute all samples enabled again")
        click(dash_duo, f"#{ids.COHORT_RUN}")
        seen = []

        def finished():
            value = dash_duo.driver.execute_script(f"const b = {bar}; return b && b.getAttribute('aria-valuenow')")
            if value is not None and (not seen or seen[-1] != float(value)):
                seen.append(float(value))
            return "already cached" in dash_duo.find_element(f"#{ids.COHORT_STATUS}").text
        wait(finished, 900, "the cohort job's summary")
        summary = dash_duo.find_element(f"#{ids.COHORT_SUMMARY}").text
        pairs, computed, cached = map(int, re.search(r"(\d+) pairs × 2 models: (\d+) computed, (\d+) already "
                                                     r"cached\.", summary).groups())
        assert pairs == len(samples) and computed + cached == total and computed >= 1 and cached >= 1, summary
        assert len(seen) >= 2 and seen == sorted(seen) and seen[0] < 100, seen  # it moved, never back
        wait_images(dash_duo, "img-dense", 4 * len(MODELS), timeout=60)  # the shown sample's maps too

        wait(lambda: dash_duo.find_element(f"#{ids.COHORT_CSV}").get_attribute("disabled") is None, 60,
             "the cohort CSV to be offered")
        click(dash_duo, f"#{ids.COHORT_CSV}")
        table = list(csv.DictReader(io.StringIO(downloaded(dash_duo, "cohort-statistics.csv").decode())))
        assert tuple(table[0]) == COLUMNS
        assert sorted((r["pair"], r["model"]) for r in table) == sorted(itertools.product(samples, MODELS))
        for r in table:
            share, dominated = float(r["mean_mri_share"]), float(r["mri_dominated"])
            assert r["error"] == "" and r["method"] and 0 <= share <= 1 and 0 <= dominated <= 1, r
            if r["model"] == "weighted-average":
                assert share == pytest.approx(0.5) and dominated == 0  # w = 0.5: equal shares
        assert not all(math.isclose(float(r["mean_mri_share"]), 0.5) for r in table)

        # a second run finds every unit cached and computes nothing
        wait(lambda: dash_duo.find_element(f"#{ids.COHORT_RUN}").get_attribute("disabled") is None, 60,
             "Compute all samples enabled again")
        click(dash_duo, f"#{ids.COHORT_RUN}")
        dash_duo.wait_for_contains_text(f"#{ids.COHORT_SUMMARY}", f"0 computed, {total} already cached", timeout=300)

        # another sample shows its maps at once: no job is asked for
        line = jobs.manager_of(dash_app).slots
        tickets = len(line.store.get(line.STATE)["tickets"])
        other = next(s for s in samples if f"pair=sample:{s}&" not in dash_duo.driver.current_url)
        choose(dash_duo, f"#{ids.PAIR_SELECT}", backend.sample_label(other))
        wait(lambda: f"pair=sample:{other}" in dash_duo.driver.current_url, 60, f"sample {other} to open")
        wait_images(dash_duo, "img-dense", 4 * len(MODELS), timeout=120)
        assert all("ready" in dash_duo.find_element(css("status", m)).text for m in MODELS)
        assert dash_duo.find_element(f"#{ids.DENSE_CANCEL}").get_attribute("disabled") is not None
        assert len(line.store.get(line.STATE)["tickets"]) == tickets  # no job was asked for
        assert not [e for e in dash_duo.get_logs() if e["level"] == "SEVERE"]
    finally:
        torch.set_num_threads(threads)
