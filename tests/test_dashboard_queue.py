"""The line in front of whole-image jobs (dashboard.job_slots) and the local job manager behind it.

First the shared record itself (order, limits per user and in total, lost jobs and their slots,
unwatched waiting tickets, late starts), with short timings; then the local manager with real
job processes from its forkserver: a second job waits until the first ends, a SIGKILLed job is
reported lost and its slot goes to the next job; then the page in headless Chromium: a second
page's job waits with its place shown and runs after the first, a killed job is shown lost and
its Retry finishes it without a reload.
"""
from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import diskcache
import flask
import pytest

from dashboard import job_slots, jobs
from dashboard.config import Config


def slots(tmp_path, per_user=1, total=2, **times) -> job_slots.JobSlots:
    return job_slots.JobSlots(job_slots.DiskStore(str(tmp_path / "slots")), per_user, total, **times)


def states(line: job_slots.JobSlots) -> dict[str, str]:
    return {key: t["state"] for key, t in line.store.get(line.STATE)["tickets"].items()}


# ------------------------------------------------------------------ the shared record
def test_tickets_are_admitted_in_order_within_both_limits(tmp_path):
    line = slots(tmp_path, per_user=1, total=2)
    assert [s.key for s in line.submit("a1", "ann", "job", [1], {})] == ["a1"]
    assert line.submit("a2", "ann", "job", [2], {}) == []  # ann already runs one
    assert [s.key for s in line.submit("b1", "bob", "job", [3], {})] == ["b1"]
    assert line.submit("c1", "cat", "job", [4], {}) == []  # the server runs two
    _, news, starts = line.poll("a2")
    assert news == {"state": "waiting", "place": 1, "why": "your other job must finish first (1 per user)"}
    assert starts == []
    _, news, _ = line.poll("c1")
    assert news["place"] == 2 and "runs 2 jobs at once" in news["why"]
    assert job_slots.waiting_text(news) == "waiting: 2nd in line"
    assert line.poll("c1")[1] is None  # told once, until it changes

    line.started("b1", 1234)
    assert line.begin("b1")
    line.finish("b1")  # bob's job ends: the first waiting ticket that may run is admitted
    _, news, starts = line.poll("c1")
    assert [s.key for s in starts] == ["c1"] and starts[0].args == [4]
    assert news == {"state": "running"}
    assert states(line) == {"a1": "running", "a2": "waiting", "b1": "done", "c1": "running"}


def test_a_silent_job_is_lost_and_its_slot_reclaimed(tmp_path):
    # a job that has begun is judged by its heartbeat alone, however long the grace to begin
    line = slots(tmp_path, total=1, lost_after=0.5, start_grace=60, beat_every=0.1)
    line.submit("a", "ann", "job", None, {})
    line.started("a", 1)
    assert line.begin("a")
    line.submit("b", "bob", "job", None, {})
    with line.heartbeat("a"):  # beats keep it running well past its heartbeat's lifetime
        time.sleep(1.5)
        ticket, _, starts = line.poll("b")
        assert states(line)["a"] == "running" and starts == []
    time.sleep(1.0)  # no more beats: lost, and b gets the slot
    ticket, news, starts = line.poll("a")
    assert ticket["state"] == "lost" and news == {"state": "lost", "why": "its worker stopped"}
    assert [s.key for s in starts] == ["b"]
    assert not line.begin("a")  # a late start of the lost job (a redelivery) does nothing


def test_a_job_that_never_starts_is_lost_after_the_grace(tmp_path):
    line = slots(tmp_path, total=1, start_grace=0.5)
    line.submit("a", "ann", "job", None, {})
    assert line.poll("a")[0]["state"] == "running"
    time.sleep(0.8)
    assert line.poll("a")[0]["state"] == "lost"


def test_unwatched_waiting_tickets_are_dropped_and_cancel_ends_tickets(tmp_path):
    line = slots(tmp_path, total=1, page_gone=0.5)
    line.submit("a", "ann", "job", None, {})
    line.submit("b", "bob", "job", None, {})
    line.submit("c", "cat", "job", None, {})
    time.sleep(0.8)
    line.poll("c")  # b's page stopped polling; c's page is here
    assert "b" not in states(line) and states(line)["c"] == "waiting"
    assert line.cancel("c") is None  # waiting: no job to stop
    line.started("a", 4321)
    assert line.cancel("a") == 4321  # the caller stops this process
    assert states(line) == {"a": "cancelled", "c": "cancelled"}
    assert not line.begin("a")


def test_a_ticket_started_too_often_is_lost(tmp_path):
    line = slots(tmp_path)
    line.submit("a", "ann", "job", None, {})
    for _ in range(job_slots.MAX_STARTS):
        assert line.begin("a")  # its worker died each time; Celery redelivered it
    assert not line.begin("a")
    assert line.ticket("a")["state"] == "lost" and "stopped 3 times" in line.ticket("a")["why"]


# ------------------------------------------------------------------ the local manager, real processes
def sleepy(out, seconds):
    """A job: writes its process id, then sleeps."""
    Path(out).write_text(json.dumps({"pid": os.getpid()}))
    time.sleep(seconds)
    return "slept"


def wait_for(condition, timeout: float, what: str):
    end = time.time() + timeout
    while time.time() < end:
        value = condition()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def started(path: Path):
    try:
        return json.loads(path.read_text())["pid"]
    except (OSError, ValueError):
        return None


@pytest.fixture
def manager(tmp_path):
    config = Config(cache_dir=str(tmp_path / "cache"), jobs_total=1, jobs_per_user=1)
    config.jobs_dir.mkdir(parents=True)
    manager = jobs.DiskcacheManager(diskcache.Cache(str(config.jobs_dir)), config)
    manager.register("sleepy", sleepy, False)
    web = flask.Flask(__name__)

    def submit(key: str, user: str, out: Path, seconds: float):
        with web.test_request_context(headers={"Authorization": "Basic c2VjcmV0OnNlY3JldA=="}):
            flask.g.fusion_user = user  # what dashboard.auth sets for a signed-in request
            context = {"headers": dict(flask.request.headers), "cookies": {"session": "x"}}
            return manager.call_job_fn(key, manager.func_registry["sleepy"], [str(out), seconds], context)
    manager.submit = submit
    yield manager
    for t in manager.slots.store.get(manager.slots.STATE)["tickets"].values():
        if t.get("handle"):
            import dash
            dash.DiskcacheManager.terminate_job(manager, t["handle"])


def test_a_second_job_waits_for_the_slot_and_starts_by_itself(manager, tmp_path):
    first, second = tmp_path / "first.json", tmp_path / "second.json"
    assert manager.submit("k1", "ann", first, 3) == "k1"  # Dash's handle is the job's key
    assert manager.submit("k2", "bob", second, 0) == "k2"
    assert manager.slots.ticket("k1")["user"] == "ann"  # taken from the request, not from the page
    stored = manager.slots.store.get("args:k1")["context"]
    assert "Authorization" not in stored["headers"] and stored["cookies"] == {}
    assert manager.job_running("k2")  # waiting keeps its page polling
    assert manager.get_updated_props("k2") == {jobs.JOB_STORE: {"data": {
        "state": "waiting", "place": 1, "why": "the server runs 1 job at once"}}}
    wait_for(lambda: started(first), 120, "the first job to start")
    assert started(second) is None and manager.slots.ticket("k2")["handle"] is None
    wait_for(lambda: manager.result_ready("k1"), 60, "the first job's result")
    assert manager.get_result("k1", "k1") == "slept"
    assert manager.slots.ticket("k1")["state"] == "done"
    # the page's polls (job_running) admit and start it; it may be over by the time its file is read
    wait_for(lambda: [manager.job_running("k2"), started(second)][1], 120, "the second job to start by itself")
    wait_for(lambda: manager.result_ready("k2"), 60, "the second job's result")
    assert manager.get_result("k2", "k2") == "slept"
    assert not manager.job_running("k2")


def test_a_killed_job_is_lost_and_its_slot_goes_to_the_next(manager, tmp_path):
    first, second = tmp_path / "first.json", tmp_path / "second.json"
    manager.submit("k1", "ann", first, 120)
    manager.submit("k2", "bob", second, 120)
    pid = wait_for(lambda: started(first), 120, "the first job to start")
    assert manager.job_running("k1")
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: not manager.job_running("k1"), 30, "the killed job to be found lost")
    assert manager.get_updated_props("k1") == {jobs.JOB_STORE: {"data": {"state": "lost",
                                                                        "why": "its worker stopped"}}}
    wait_for(lambda: manager.job_running("k2") and started(second), 120, "the next job to get the slot")
    manager.terminate_job("k2")  # Cancel: the job's process is stopped and its polling ends
    assert not manager.job_running("k2")
    assert manager.slots.ticket("k2")["state"] == "cancelled"
    import psutil
    wait_for(lambda: not psutil.pid_exists(started(second)) or
             psutil.Process(started(second)).status() == psutil.STATUS_ZOMBIE, 30, "the cancelled job to stop")


# ------------------------------------------------------------------ the page, two tabs
@pytest.mark.browser
def test_pages_wait_in_line_and_a_lost_job_is_retried_without_a_reload(dash_duo, tmp_path):
    """jobs_total=1: tab B's job waits (its place shown) while tab A's runs; A's job process is
    SIGKILLed: A shows the loss and gets Compute back, B's job starts by itself and finishes,
    A's Retry finishes A's job."""
    import torch
    from browser_helpers import css, job_processes, upload_pair, wait, wait_images

    import app as app_module

    model = "funfusean"
    threads = torch.get_num_threads()
    try:
        config = Config(cache_dir=str(tmp_path / "cache"), default_models=(model,), jobs_total=1)
        dash_duo.start_server(app_module.create_app(config))
        wait_images(dash_duo, "img-fused", 1)
        upload_pair(dash_duo, tmp_path, shape=(48, 48))
        driver = dash_duo.driver
        tab_a = driver.current_window_handle
        link = driver.find_element("css selector", "#fs-link").get_attribute("value")
        driver.switch_to.new_window("tab")
        tab_b = driver.current_window_handle
        driver.get(link)  # the same pair, shared by its link
        wait_images(dash_duo, "img-fused", 1)

        def status() -> str:
            return dash_duo.find_element(css("status", model)).text

        def press(selector: str) -> None:
            driver.execute_script("arguments[0].click()", dash_duo.find_element(selector))

        def compute_enabled() -> bool:
            return dash_duo.find_element("#fs-dense-run").get_attribute("disabled") is None

        before = job_processes()
        driver.switch_to.window(tab_a)
        press("#fs-dense-run")
        wait(lambda: dash_duo.find_elements(css("status", model) + " .progress"), 120, "A's job's progress")
        line = job_slots.DiskStore(str(config.jobs_dir / "slots")).get(job_slots.JobSlots.STATE)["tickets"]
        (job_a,) = [t["handle"] for t in line.values() if t["state"] == "running"]
        assert job_a in job_processes() - before  # a process of its own, from the forkserver

        driver.switch_to.window(tab_b)
        press("#fs-dense-run")
        dash_duo.wait_for_contains_text("#fs-dense-msg", "waiting: 1st in line", timeout=30)
        assert "waiting: 1st in line" in status()
        line = job_slots.DiskStore(str(config.jobs_dir / "slots")).get(job_slots.JobSlots.STATE)["tickets"]
        assert [t["state"] for t in line.values()] == ["running", "waiting"]  # B's job has no process yet
        assert not compute_enabled()  # B's Cancel would take it out of the line

        os.kill(job_a, signal.SIGKILL)
        driver.switch_to.window(tab_a)
        dash_duo.wait_for_contains_text("#fs-job-lost", "The job was lost (its worker stopped)", timeout=60)
        wait(compute_enabled, 30, "Compute enabled on A after the loss")
        assert "job lost" in status()
        assert "lost" in dash_duo.find_element(css("empty", model)).text

        driver.switch_to.window(tab_b)  # B got the slot by itself and finishes
        wait(lambda: "ready" in status(), 300, "B's job to start by itself and finish")
        wait_images(dash_duo, "img-dense", 4)
        assert not dash_duo.find_elements("#fs-job-waiting")

        driver.switch_to.window(tab_a)
        press('[id*=\'"type":"job-retry"\']')
        wait(lambda: "ready" in status(), 300, "A's retried job to finish")
        wait_images(dash_duo, "img-dense", 4)
        assert not dash_duo.find_elements("#fs-job-lost") and compute_enabled()
        assert not [e for e in dash_duo.get_logs() if e["level"] == "SEVERE"]
    finally:
        torch.set_num_threads(threads)


# ------------------------------------------------------------------ a web process killed and started again
WEB = """
import io, sys, time
import numpy as np
from PIL import Image
import app  # the web app, built from the environment (FUSION_CACHE_DIR)
from dashboard import backend

def png(seed):
    out = io.BytesIO()
    Image.fromarray((np.random.default_rng(seed).random((32, 32)) * 255).astype(np.uint8)).save(out, "PNG")
    return out.getvalue()

if sys.argv[1] == "compute":
    pair = backend.put_uploaded_pair(png(1), "mri.png", png(2), "pet.png")
    backend.service().dense("weighted-average", pair)
    print(pair, float(backend.dense_maps("weighted-average", pair)["mri_share"].sum()), flush=True)
    time.sleep(600)  # killed here, as a web process is
else:
    maps = backend.dense_maps("weighted-average", sys.argv[2])
    print(None if maps is None else float(maps["mri_share"].sum()), flush=True)
"""


def test_finished_results_outlive_a_killed_web_process(tmp_path):
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[1]
    env = dict(os.environ, FUSION_CACHE_DIR=str(tmp_path / "cache"), FUSION_HOVER_PROCESSES="0")
    first = subprocess.Popen([sys.executable, "-c", WEB, "compute"], cwd=root, env=env, stdout=subprocess.PIPE,
                             text=True)
    try:
        pair, total = first.stdout.readline().split()
    finally:
        first.send_signal(signal.SIGKILL)  # no exit handler runs, nothing is flushed on the way out
        first.wait(timeout=30)
    again = subprocess.run([sys.executable, "-c", WEB, "read", pair], cwd=root, env=env, capture_output=True,
                           text=True, timeout=300)
    assert again.returncode == 0, again.stderr[-2000:]
    assert again.stdout.split() == [total]  # the restarted process serves the finished maps
