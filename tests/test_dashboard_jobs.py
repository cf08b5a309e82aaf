"""Local background jobs (dashboard.jobs): started from a clean forkserver, never forked from the web process.

``dispatch`` starts a job's process (the line in front of it is tested in test_dashboard_queue.py).
"""
from __future__ import annotations

import json
import os
import time
from pathlib import Path

import dash
import diskcache
import psutil
import pytest

from dashboard import backend, jobs
from dashboard.config import Config


def report(result_key, progress_key, args, context):
    """A job that writes what its process inherited: open SQLite files, parent, settings."""
    out, seconds = args
    links = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            links.append(os.readlink(f"/proc/self/fd/{fd}"))
        except OSError:
            pass
    Path(out).write_text(json.dumps({"ppid": os.getppid(), "sqlite": [p for p in links if "cache.db" in p],
                                     "cache_dir": backend.config().cache_dir}))
    time.sleep(seconds)


@pytest.fixture
def manager(tmp_path):
    config = Config(cache_dir=str(tmp_path / "cache"))
    config.jobs_dir.mkdir(parents=True)
    web_cache = diskcache.Cache(str(tmp_path / "cache"))  # the web process has databases open
    web_cache.set("x", b"1" * 100_000)
    yield jobs.DiskcacheManager(diskcache.Cache(str(config.jobs_dir)), config)
    web_cache.close()


def wait_for(path: Path, timeout: float = 120) -> dict:
    end = time.time() + timeout
    while time.time() < end:
        try:
            return json.loads(path.read_text())
        except (OSError, ValueError):
            time.sleep(0.1)
    raise AssertionError(f"the job never wrote {path}")


def test_a_job_inherits_no_open_database_and_gets_the_settings(manager, tmp_path):
    pid = manager.dispatch("key", report, (str(tmp_path / "out.json"), 0), {})
    seen = wait_for(tmp_path / "out.json")
    assert seen["sqlite"] == []  # a forked job inherits the web process's SQLite files (and their locks)
    assert seen["ppid"] != os.getpid()  # forked from the forkserver, not from this process
    assert seen["cache_dir"] == str(tmp_path / "cache")
    assert pid != os.getpid()


def test_a_running_job_can_be_cancelled(manager, tmp_path):
    pid = manager.dispatch("key", report, (str(tmp_path / "out.json"), 60), {})
    wait_for(tmp_path / "out.json")
    running = dash.DiskcacheManager.job_running  # by process id, under the line's own job_running
    assert running(manager, pid)
    dash.DiskcacheManager.terminate_job(manager, pid)
    end = time.time() + 30
    while running(manager, pid) and time.time() < end:
        time.sleep(0.1)
    assert not running(manager, pid)
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE


def test_the_app_keeps_its_job_manager(tmp_path):
    """``app.create_app`` attaches the manager it built (``jobs.manager_of``): without REDIS_URL a
    DiskcacheManager holding the page's background callbacks; an app built otherwise has none."""
    import torch

    import app as app_module

    threads = torch.get_num_threads()  # the app sets its own; give the other tests theirs back
    try:
        dash_app = app_module.create_app(Config(cache_dir=str(tmp_path / "cache"), hover_processes=0))
        manager = jobs.manager_of(dash_app)
        assert isinstance(manager, jobs.DiskcacheManager) and manager.func_registry
        assert jobs.manager_of(dash_app) is manager and manager.config.cache_dir == str(tmp_path / "cache")
        with pytest.raises(KeyError):
            jobs.manager_of(dash.Dash(__name__))
    finally:
        torch.set_num_threads(threads)
