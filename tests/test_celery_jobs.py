"""Dense jobs on real Celery workers: the lab-server set-up (``REDIS_URL`` set) end to end.

A throw-away ``redis-server`` (free port, temporary directory, no persistence), two
``celery -A app:celery_app worker`` subprocesses and the dashboard in dash_duo (built by
``app.create_app`` with the same settings as the workers) share one temporary service cache.
Dense jobs started from the page must run on the workers (their logs show the tasks) and the
page must show the finished maps, which it reads from the cache the workers wrote; a job
survives its worker: a SIGKILLed pool process's job is redone, a SIGKILLed worker's job is
shown lost with a Retry that finishes it, and Cancel gives Compute back even for a dead job.

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
from browser_helpers import css, png_bytes, upload_pair, wait, wait_images
from PIL import Image

from dashboard import jobs
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


class Worker:
    """One ``celery worker`` subprocess (prefork pool of one process) and its log."""

    def __init__(self, name: str, proc: subprocess.Popen, log: Path):
        self.name, self.proc, self.log_path = name, proc, log

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def received(self, task: str) -> list[str]:
        """Ids of the dense jobs this worker received, oldest first (a redelivered one twice)."""
        return re.findall(rf"Task {task}\[([0-9a-f-]+)\] received", self.log())

    def pool_process(self) -> int:
        """The process id of the worker's one pool process (it runs the job)."""
        import psutil

        (child,) = psutil.Process(self.proc.pid).children()
        return child.pid


class CeleryStack:
    """redis-server + Celery workers in ``root``; ``close()`` ends them all, whatever happened."""

    def __init__(self, root: Path):
        self.root = root
        self.procs: list[tuple[str, subprocess.Popen, object]] = []
        self.workers: list[Worker] = []
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

    def start_workers(self, env: dict, names: tuple[str, ...], timeout: float = 300) -> list[Worker]:
        """``celery -A app:celery_app worker`` as the README starts it (prefork pool, here one process
        each), one per name, started together; waits until all are ready."""
        started = []
        for name in names:
            log = self.root / f"{name}.log"
            args = [sys.executable, "-m", "celery", "-A", "app:celery_app", "worker", "--concurrency=1",
                    "--loglevel=INFO", "--without-gossip", "--without-mingle", "--without-heartbeat",
                    "--hostname", f"{name}@%h"]
            started.append(Worker(name, self._spawn(f"celery worker {name}", args, log, cwd=ROOT, env=env), log))
        self.workers += started
        end = time.time() + timeout  # each imports torch and builds the app: slow on a busy machine
        for w in started:
            while not re.search(rf"{w.name}@\S+ ready", w.log()):
                if w.proc.poll() is not None:
                    raise AssertionError(f"the Celery worker {w.name} exited with {w.proc.returncode}; its log:\n"
                                         f"{tail(w.log_path)}")
                if time.time() > end:
                    raise AssertionError(f"the Celery worker {w.name} was not ready after {timeout} s; its log:\n"
                                         f"{tail(w.log_path)}")
                time.sleep(0.2)
        return started

    def logs(self) -> str:
        return "\n".join(f"--- {w.name} (end) ---\n{tail(w.log_path)}" for w in self.workers)

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
        while self.procs:  # the workers first, then redis
            entry = self.procs.pop()
            try:
                self._stop(entry)
            except Exception as exc:  # noqa: BLE001 - stop the others anyway
                errors.append(f"{entry[0]}: {exc!r}")
        if self.workers:  # shown with the report of a failed test
            print(f"--- the Celery workers' logs ---\n{self.logs()}")
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
    return Image.open(io.BytesIO(png_bytes(dash_duo.find_element(css("img-fused", model)).get_attribute("src")))).size


def press(dash_duo, selector: str) -> None:
    """Click a button wherever the page has scrolled it (the sidebar is sticky; what is tested here is the job)."""
    dash_duo.driver.execute_script("arguments[0].click()", dash_duo.find_element(selector))




def test_dense_jobs_run_on_celery_workers_and_survive_them(celery_stack, dash_duo, tmp_path, monkeypatch):
    celery_stack.require()
    import dash
    import redis
    import torch

    import app as app_module
    from dashboard import job_slots

    # The workers and the web app get exactly the same settings, from the same environment.
    env = dict(os.environ)
    env.update(REDIS_URL=celery_stack.start_redis(), FUSION_CACHE_DIR=str(tmp_path / "cache"),
               FUSION_DASH_MODELS=MODEL, FUSION_JOB_THREADS="1", FUSION_DEVICE="cpu")
    workers = celery_stack.start_workers(env, ("fusion-a", "fusion-b"))
    tasks = set(re.findall(r"background_callback_[0-9a-f]+", workers[0].log()))
    assert len(tasks) == 2, f"the worker should register the dashboard's two background callbacks: {tasks}"
    task = None  # the Compute's (not "Compute all samples"), known once the web app is built
    store = job_slots.RedisStore(env["REDIS_URL"])

    def received() -> list[str]:
        """Every dense job the workers received (a redelivered one twice)."""
        return [job for w in workers for job in w.received(task)]

    def status() -> str:
        return dash_duo.find_element(css("status", MODEL)).text

    def compute_enabled() -> bool:
        return dash_duo.find_element("#fs-dense-run").get_attribute("disabled") is None

    def start_job(seen: list[str]) -> tuple[str, Worker]:
        """Compute, wait for the job's progress; returns the new job and the worker running it."""
        press(dash_duo, "#fs-dense-run")
        wait(lambda: dash_duo.find_elements(css("status", MODEL) + " .progress") and set(received()) - set(seen),
             120, "the job's progress")
        (job,) = set(received()) - set(seen)
        (worker,) = [w for w in workers if job in w.received(task)]
        return job, worker

    def finished(what: str) -> None:
        try:
            wait(lambda: "ready" in status(), 300, what)
        except AssertionError as exc:
            raise AssertionError(f"{exc}; the workers' logs:\n{celery_stack.logs()}") from None
        wait_images(dash_duo, "img-dense", 4)

    monkeypatch.setitem(vars(app_module), "celery_app", None)  # create_app sets it; undone after the test
    threads = torch.get_num_threads()  # the app sets its own; give the other tests theirs back
    try:
        dash_app = app_module.create_app(from_env(env))
        manager = jobs.manager_of(dash_app)
        assert isinstance(manager, dash.CeleryManager) and app_module.celery_app is manager.handle
        assert {f"background_callback_{key}" for key in manager.func_registry} == tasks, \
            "the web app and the workers must register the same background callbacks"
        (task,) = [f"background_callback_{key}" for key, store in manager.news_stores.items()
                   if store == jobs.JOB_STORE]
        conf = manager.handle.conf
        assert conf.task_acks_late and conf.task_reject_on_worker_lost and conf.worker_prefetch_multiplier == 1
        dash_duo.start_server(dash_app, port=free_port())
        wait_images(dash_duo, "img-fused", 1)
        # the secret that signs job handles is shared through redis and does not expire
        assert redis.Redis.from_url(env["REDIS_URL"]).ttl(manager.SIGNING_SECRET_KEY) == -1

        # A small uploaded pair: the workers read it from the shared cache, which the web process wrote.
        upload_pair(dash_duo, tmp_path, shape=(48, 48))
        wait(lambda: fused_size(dash_duo, MODEL) == (48, 48), 60, "the fused image of the uploaded pair")
        assert "not computed" in status()

        # 1. Cancel: the worker terminates the running job (prefork pool) and Compute is offered again.
        first, worker = start_job([])
        press(dash_duo, "#fs-dense-cancel")
        wait(lambda: f"Terminating {first}" in worker.log(), 30, "the worker to terminate the cancelled job")
        wait(compute_enabled, 60, "Compute to be enabled after Cancel")
        assert "ready" not in status()

        # 2. The pool process running the job is SIGKILLed: Celery requeues the job (acknowledged late),
        #    a worker runs it again, and the page shows its maps.
        second, worker = start_job(received())
        os.kill(worker.pool_process(), signal.SIGKILL)
        finished("the job of a killed pool process to be redone")
        assert received().count(second) == 2, "the killed pool process's job was not redelivered"
        assert not dash_duo.find_elements("#fs-job-lost")
        runs = [t["starts"] for t in store.get(job_slots.JobSlots.STATE)["tickets"].values() if t["state"] == "done"]
        assert runs == [2]
        assert received().count(first) == 1, "a cancelled job must not be redelivered"

        # 3. A whole worker is SIGKILLed: its job's message stays unacknowledged (until the broker's
        #    visibility timeout), the page reports the job lost and gives Compute back; Retry starts
        #    it again, on the other worker, which finishes it.
        (tmp_path / "second").mkdir()  # another file path: the browser ignores the same file chosen again
        upload_pair(dash_duo, tmp_path / "second", shape=(48, 46))
        wait(lambda: fused_size(dash_duo, MODEL) == (46, 48), 60, "the second uploaded pair")
        third, dead = start_job(received())
        os.killpg(dead.proc.pid, signal.SIGKILL)
        dead.proc.wait(timeout=30)
        dash_duo.wait_for_contains_text("#fs-job-lost", "The job was lost (its worker stopped)", timeout=90)
        wait(compute_enabled, 30, "Compute enabled after the loss")
        assert "job lost" in status()
        press(dash_duo, '[id*=\'"type":"job-retry"\']')
        finished("the retried job to finish on the other worker")
        (alive,) = [w for w in workers if w is not dead]
        assert [j for j in alive.received(task) if j not in (first, second)], "the retry ran on the live worker"
        assert not dash_duo.find_elements("#fs-job-lost") and compute_enabled()

        # 4. The last worker is SIGKILLed during a job and the user cancels: Compute comes back at once
        #    (not only once the job is found lost), and the page says cancelled.
        (tmp_path / "third").mkdir()
        upload_pair(dash_duo, tmp_path / "third", shape=(46, 48))
        wait(lambda: fused_size(dash_duo, MODEL) == (48, 46), 60, "the third uploaded pair")
        start_job(received())
        os.killpg(alive.proc.pid, signal.SIGKILL)
        alive.proc.wait(timeout=30)
        press(dash_duo, "#fs-dense-cancel")
        wait(compute_enabled, 30, "Compute enabled after Cancel of a job whose worker is dead")
        dash_duo.wait_for_contains_text(css("status", MODEL), "cancelled at", timeout=30)
        assert not dash_duo.find_elements("#fs-job-lost")
        assert not [e for e in dash_duo.get_logs() if e["level"] == "SEVERE"]
    finally:
        torch.set_num_threads(threads)


def test_one_request_is_shared_by_two_celery_workers(celery_stack, tmp_path):
    """A request's blocks go to two real Celery workers (this process only coordinates, as a web process
    could): both compute, the merged maps equal one job's, and a worker's pool process killed in the
    middle of a block does not lose the request (its block is taken again)."""
    celery_stack.require()
    import numpy as np
    from celery import Celery

    from dashboard.dense_job import HELPER_TASK
    from fusion import fanout
    from fusion.data import load_sample
    from fusion.serving import SaliencyService

    env = dict(os.environ)
    env.update(REDIS_URL=celery_stack.start_redis(), FUSION_CACHE_DIR=str(tmp_path / "cache"), FUSION_DEVICE="cpu")
    workers = celery_stack.start_workers(env, ("fusion-a", "fusion-b"))
    sender = Celery("fanout-test", broker=env["REDIS_URL"], backend=env["REDIS_URL"])
    service = SaliencyService(cache_dir=tmp_path / "cache")
    board = fanout.RedisBoard(env["REDIS_URL"])
    settings = fanout.service_settings(service)

    def start_helpers(request, count):
        for _ in range(count):
            sender.send_task(HELPER_TASK, args=[settings, request.board.spec, request.id])

    sample = load_sample("head-axial-090")
    a, b = sample.mri[40:104, 60:108].copy(), sample.pet[40:104, 60:108].copy()
    pair_id = service.put_pair(a, b)
    units = [("funfusean", pair_id), ("deepfuse", pair_id)]
    try:
        outcome = fanout.run(service, units, workers=2, board=board, request_id="shared", participate=False,
                             start_helpers=start_helpers)
    except Exception as exc:
        raise AssertionError(f"{exc}; the workers' logs:\n{celery_stack.logs()}") from None
    assert all(unit["state"] == "done" for unit in outcome.values()), outcome
    request = fanout.Request(board, "shared")
    hosts = {request.state(task)["by"].split("@")[0] for task in request.tasks}
    assert len(request.tasks) >= 4 and hosts == {"fusion-a", "fusion-b"}, hosts
    reference = SaliencyService(cache_dir=tmp_path / "serial")
    for name, _ in units:
        got, want = service.cached_dense(name, pair_id), reference.dense(name, reference.put_pair(a, b))
        for key in ("guidance_a", "guidance_b", "influence_a", "influence_b", "fused"):
            assert np.abs(getattr(got, key) - getattr(want, key)).max() <= 1e-6 * np.abs(getattr(want, key)).max()

    # A pool process killed while it holds a block: the block is taken again and the request completes.
    other = a[::-1].copy(), b[::-1].copy()
    other_id = service.put_pair(*other)
    killed = []

    def kill_a_holder(request, summary):
        if killed:
            return
        for task in request.tasks:
            held = request.state(task)["held"]
            if held and request.state(task)["progress"][0] > 0:
                worker = next(w for w in workers if held.startswith(w.name))
                os.kill(worker.pool_process(), signal.SIGKILL)
                killed.append(task)
                return

    outcome = fanout.run(service, [("funfusean", other_id)], workers=2, board=board, request_id="killed",
                         participate=False, start_helpers=start_helpers, progress=kill_a_holder)
    assert killed and outcome[("funfusean", other_id)]["state"] == "done", outcome
    assert fanout.Request(board, "killed").state(killed[0])["attempts"] == 2
