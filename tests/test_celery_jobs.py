"""Dense jobs on a real Celery worker: the lab-server set-up (``REDIS_URL`` set) end to end.

A throw-away ``redis-server`` (free port, temporary directory, no persistence), a
``celery -A app:celery_app worker`` subprocess and the dashboard in dash_duo (built by
``app.create_app`` with the same settings as the worker) share one temporary service cache.
A dense job started from the page must run on the worker (its log shows the task) and the
page must show the finished maps, which it reads from the cache the worker wrote.

Run with ``pytest --headless``. Needs Debian's ``redis-server`` and ``celery[redis]``
(requirements-dev.txt; ``.ci/run`` installs both): in CI (``CI=true``) a missing one
fails the test, elsewhere it is skipped.
"""
from __future__ import annotations

import importlib.util
import io
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from PIL import Image
from test_dashboard_browser import _png, css, upload_pair, wait, wait_images

from dashboard.config import from_env

pytestmark = [pytest.mark.browser, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[1]
MODEL = "funfusean"  # a real receptive field (progress over many chunks), about 10 s on a 48 x 48 upload


def missing_prerequisites() -> list[str]:
    missing = []
    if shutil.which("redis-server") is None:
        missing.append("redis-server is not on PATH (Debian: apt-get install redis-server; .ci/run does this)")
    for module in ("celery", "redis"):
        if importlib.util.find_spec(module) is None:
            missing.append(f"the Python package {module} is missing (pip install -r requirements-dev.txt)")
    return missing


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


try:  # looked up here, not in the forked child
    import ctypes

    _prctl = ctypes.CDLL(None, use_errno=True).prctl if sys.platform == "linux" else None
except (OSError, AttributeError):
    _prctl = None


def _die_with_pytest():
    """Linux: the child gets SIGKILL when this process ends, even killed outright (no teardown)."""
    if _prctl is not None:
        _prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def tail(path: Path, chars: int = 4000) -> str:
    return path.read_text(errors="replace")[-chars:] if path.exists() else "(no log)"


class CeleryStack:
    """redis-server + one Celery worker in ``root``; ``close()`` ends both, whatever happened."""

    def __init__(self, root: Path):
        self.root = root
        self.procs: list[tuple[str, subprocess.Popen, object]] = []
        self.worker_log = root / "worker.log"
        self.redis_log = root / "redis.log"

    def require(self) -> None:
        missing = missing_prerequisites()
        if not missing:
            return
        message = "the Celery job test needs: " + "; ".join(missing)
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(message, pytrace=False)
        pytest.skip(message)

    def _spawn(self, name: str, args: list[str], log: Path, **kwargs) -> subprocess.Popen:
        handle = open(log, "ab")  # noqa: SIM115 - closed in close()
        # a session of its own: close() ends the process and any children it forked (prefork pools)
        proc = subprocess.Popen(args, stdout=handle, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True, preexec_fn=_die_with_pytest, **kwargs)
        self.procs.append((name, proc, handle))
        return proc

    def start_redis(self) -> str:
        """Start redis-server on a free port; returns its URL."""
        import redis

        data = self.root / "redis"
        data.mkdir()
        for _ in range(3):  # another process may take the free port before redis binds it
            port = free_port()
            proc = self._spawn("redis-server", ["redis-server", "--port", str(port), "--bind", "127.0.0.1",
                                                "--save", "", "--appendonly", "no", "--dir", str(data),
                                                "--daemonize", "no"], self.redis_log, cwd=data)
            url = f"redis://127.0.0.1:{port}/0"
            end = time.time() + 20
            while time.time() < end and proc.poll() is None:
                try:
                    if redis.Redis.from_url(url, socket_timeout=1).ping():
                        return url
                except redis.exceptions.ConnectionError:
                    time.sleep(0.1)
            self._stop(self.procs.pop())
        raise AssertionError(f"redis-server did not start; its log:\n{tail(self.redis_log)}")

    def start_worker(self, env: dict, timeout: float = 240) -> subprocess.Popen:
        """``celery -A app:celery_app worker`` as the README starts it (prefork pool, here one
        process) with ``env``; waits until it is ready."""
        args = [sys.executable, "-m", "celery", "-A", "app:celery_app", "worker", "--concurrency=1", "--loglevel=INFO",
                "--without-gossip", "--without-mingle", "--without-heartbeat", "--hostname", "fusion-test@%h"]
        proc = self._spawn("celery worker", args, self.worker_log, cwd=ROOT, env=env)
        end = time.time() + timeout  # the worker imports torch and builds the app: slow on a busy machine
        while time.time() < end:
            if proc.poll() is not None:
                raise AssertionError(f"the Celery worker exited with {proc.returncode}; its log:\n"
                                     f"{tail(self.worker_log)}")
            if re.search(r"fusion-test@\S+ ready", self.log()):
                return proc
            time.sleep(0.2)
        raise AssertionError(f"the Celery worker was not ready after {timeout} s; its log:\n{tail(self.worker_log)}")

    def log(self) -> str:
        return self.worker_log.read_text(errors="replace") if self.worker_log.exists() else ""

    @staticmethod
    def _stop(entry) -> None:
        name, proc, handle = entry
        try:
            if proc.poll() is None:
                # SIGTERM (a warm shutdown waits for a running job), then SIGKILL for the whole group
                os.killpg(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait(timeout=10)
            else:
                try:  # children the leader left behind
                    os.killpg(proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        finally:
            handle.close()

    def close(self) -> None:
        errors = []
        while self.procs:  # the worker first, then redis
            entry = self.procs.pop()
            try:
                self._stop(entry)
            except Exception as exc:  # noqa: BLE001 - stop the others anyway
                errors.append(f"{entry[0]}: {exc!r}")
        if self.worker_log.exists():  # shown with the report of a failed test
            print(f"--- the Celery worker's log (end) ---\n{tail(self.worker_log)}")
        assert not errors, f"could not stop: {errors}"


@pytest.fixture
def celery_stack(tmp_path):
    """Requested before dash_duo, so it is torn down after the app server and browser."""
    stack = CeleryStack(tmp_path)
    try:
        yield stack
    finally:
        stack.close()


def fused_size(dash_duo, model: str) -> tuple[int, int]:
    return Image.open(io.BytesIO(_png(dash_duo.find_element(css("img-fused", model)).get_attribute("src")))).size


def press(dash_duo, selector: str) -> None:
    """Click a button wherever the page has scrolled it (the sidebar is sticky; what is tested here is the job)."""
    dash_duo.driver.execute_script("arguments[0].click()", dash_duo.find_element(selector))


def test_dense_job_runs_on_the_celery_worker(celery_stack, dash_duo, tmp_path, monkeypatch):
    celery_stack.require()
    import dash
    import redis
    import torch

    import app as app_module

    # The worker and the web app get exactly the same settings, from the same environment.
    env = dict(os.environ)
    env.update(REDIS_URL=celery_stack.start_redis(), FUSION_CACHE_DIR=str(tmp_path / "cache"),
               FUSION_DASH_MODELS=MODEL, FUSION_JOB_THREADS="1", FUSION_DEVICE="cpu")
    worker = celery_stack.start_worker(env)
    tasks = set(re.findall(r"background_callback_[0-9a-f]+", celery_stack.log()))
    assert len(tasks) == 1, f"the worker should register the dashboard's one background callback: {tasks}"
    (task,) = tasks

    def jobs(event: str) -> list[str]:
        """Ids of the worker's dense jobs that reached ``event`` (received, succeeded...), oldest first."""
        return re.findall(rf"Task {task}\[([0-9a-f-]+)\] {event}", celery_stack.log())

    def status() -> str:
        assert worker.poll() is None, f"the Celery worker died; its log:\n{tail(celery_stack.worker_log)}"
        return dash_duo.find_element(css("status", MODEL)).text

    monkeypatch.setitem(vars(app_module), "celery_app", None)  # create_app sets it; undone after the test
    threads = torch.get_num_threads()  # the app sets its own; give the other tests theirs back
    try:
        dash_app = app_module.create_app(from_env(env))
        manager = dash_app._background_manager
        assert isinstance(manager, dash.CeleryManager) and app_module.celery_app is manager.handle
        assert {f"background_callback_{key}" for key in manager.func_registry} == tasks, \
            "the web app and the worker must register the same background callbacks"
        dash_duo.start_server(dash_app, port=free_port())
        wait_images(dash_duo, "img-fused", 1)
        # the secret that signs job handles is shared through redis and does not expire
        assert redis.Redis.from_url(env["REDIS_URL"]).ttl(manager.SIGNING_SECRET_KEY) == -1

        # A small uploaded pair: the worker reads it from the shared cache, which the web process wrote.
        upload_pair(dash_duo, tmp_path, shape=(48, 48))
        wait(lambda: fused_size(dash_duo, MODEL) == (48, 48), 60, "the fused image of the uploaded pair")
        assert "not computed" in status()

        # Cancel: the worker terminates the running job (prefork pool) and Compute is offered again.
        press(dash_duo, "#fs-dense-run")
        wait(lambda: dash_duo.find_elements(css("status", MODEL) + " .progress"), 120,
             "the first job's progress (from the worker)")
        press(dash_duo, "#fs-dense-cancel")
        (first,) = jobs("received")
        wait(lambda: f"Terminating {first}" in celery_stack.log(), 30, "the worker to terminate the cancelled job")
        wait(lambda: dash_duo.find_element("#fs-dense-run").get_attribute("disabled") is None, 60,
             "Compute to be enabled after Cancel")
        assert "ready" not in status() and not jobs("succeeded")

        # Compute again: this job runs to the end on the worker and the page shows its maps.
        press(dash_duo, "#fs-dense-run")
        seen = set()

        def finished():
            if dash_duo.find_elements(css("status", MODEL) + " .progress"):
                seen.add("progress")
            return "ready" in status()
        try:
            wait(finished, 300, "the dense job to finish on the Celery worker")
        except AssertionError as exc:
            raise AssertionError(f"{exc}; the worker's log:\n{tail(celery_stack.worker_log)}") from None
        wait_images(dash_duo, "img-dense", 4)
        assert "progress" in seen, "the worker's progress reports never reached the page"
        dash_duo.wait_for_contains_text("#fs-hist", MODEL, timeout=60)

        # Both jobs ran on the worker (nothing ran in the web process: it has no other manager);
        # the second finished there, and the maps the page shows came from the cache it wrote.
        received, succeeded = jobs("received"), jobs("succeeded")
        assert len(received) == 2 and received[0] == first and succeeded == received[1:], celery_stack.log()[-4000:]
        assert "failed" not in status()
        assert not [e for e in dash_duo.get_logs() if e["level"] == "SEVERE"]
    finally:
        torch.set_num_threads(threads)
