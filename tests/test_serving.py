"""Serving: gunicorn with the repository's gunicorn.conf.py on loopback, under hovers from a few users,
one web worker killed; and the access log lines (dashboard/access_log.py)."""
from __future__ import annotations

import http.client
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
import pytest
from flask import Flask

from dashboard import access_log

ROOT = Path(__file__).resolve().parent.parent
MODELS = "weighted-average,deepfuse"


# ------------------------------------------------------------------ the access log, in process
@pytest.fixture
def access_lines(caplog):
    log = logging.getLogger(access_log.LOGGER)
    saved = log.handlers[:], log.level, log.propagate
    log.handlers, log.propagate = [caplog.handler], False
    log.setLevel(logging.INFO)
    yield lambda: [json.loads(r.getMessage()) for r in caplog.records if r.name == access_log.LOGGER]
    log.handlers, log.level, log.propagate = saved


def small_app() -> Flask:
    server = Flask("t")
    access_log.register(server)

    @server.before_request
    def sign_in():  # like dashboard.auth's hook: refuses, or names the user for current_user()
        from flask import g, request
        if request.path == "/secret":
            return "no", 401
        if request.authorization:
            g.fusion_user = request.authorization.username
        return None

    server.add_url_rule("/fs-api/pixel", "pixel", lambda: {"ok": 1})
    server.add_url_rule("/boom", "boom", lambda: 1 / 0)
    return server


def test_access_lines_name_user_route_status_and_time_without_the_query(access_lines):
    client = small_app().test_client()
    client.get("/fs-api/pixel?pair=0123456789abcdef&models=x&row=1&col=2", auth=("ada", "pw"))
    client.get("/secret")
    client.get("/nowhere/%22quoted%22%0Aline?pair=feedbeef")
    client.get("/boom")
    lines = access_lines()
    assert [(x["user"], x["method"], x["route"], x["status"]) for x in lines] == [
        ("ada", "GET", "/fs-api/pixel", 200), ("-", "GET", "/secret", 401),
        ("local", "GET", "/nowhere/\"quoted\"\nline", 404), ("local", "GET", "/boom", 500)]
    assert all(isinstance(x["ms"], float) and x["ms"] >= 0 for x in lines)
    text = "\n".join(access_log.line(x["user"], x["method"], x["route"], x["status"], x["ms"], x["bytes"])
                     for x in lines)
    assert "0123456789abcdef" not in text and "feedbeef" not in text and len(text.splitlines()) == 4


def test_access_line_bounds_what_comes_from_the_request():
    record = json.loads(access_log.line("u" * 5000, "GET", "/" + "a" * 5000, 200, 1.234, 10))
    assert len(record["user"]) == len(record["route"]) == access_log.MAX_FIELD and record["ms"] == 1.2


# ------------------------------------------------------------------ gunicorn with the repository's conf
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(port: int, path: str, timeout: float = 60) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def hover_path(pair: str, row: int, col: int) -> str:
    return (f"/fs-api/pixel?pair={pair}&models={MODELS}&row={row}&col={col}&jac=signed&shared=0&gamma=1"
            f"&win=rf&seq=1")


def hover_ok(status: int, body: bytes) -> bool:
    return status == 200 and b'"error"' not in body and body.count(b"data:image/png") == 2 * len(MODELS.split(","))


@pytest.fixture
def gunicorn(tmp_path):
    """gunicorn app:server with the repository's conf and 2 web workers, a fresh cache; (process, port, log)."""
    port, log_path = free_port(), tmp_path / "gunicorn.log"
    env = dict(os.environ, FUSION_DASH_HOST="127.0.0.1", FUSION_DASH_PORT=str(port),
               FUSION_CACHE_DIR=str(tmp_path / "cache"), FUSION_DASH_MODELS=MODELS)
    env.pop("GUNICORN_CMD_ARGS", None)
    with open(log_path, "wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "gunicorn", "app:server", "-c", str(ROOT / "gunicorn.conf.py"),
                                 "--workers", "2"], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)
    try:
        end = time.time() + 60
        while True:
            assert proc.poll() is None, log_path.read_text()[-3000:]
            try:
                if get(port, "/healthz", timeout=5)[0] == 200:
                    break
            except OSError:
                pass
            assert time.time() < end, "gunicorn did not answer /healthz within 60 s"
            time.sleep(0.3)
        yield proc, port, log_path
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                pass
        try:  # whatever is left of the server's process group (a worker's hover processes, say)
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait(timeout=10)


def group_members(pgid: int) -> set[int]:
    out = set()
    for p in psutil.process_iter():
        try:
            if os.getpgid(p.pid) == pgid and p.status() != psutil.STATUS_ZOMBIE:
                out.add(p.pid)
        except (ProcessLookupError, psutil.NoSuchProcess):
            pass
    return out


def test_gunicorn_serves_on_when_a_web_worker_is_killed_under_load(gunicorn):
    proc, port, log_path = gunicorn
    from dashboard.backend import SAMPLE_PREFIX, default_pair_key
    from dashboard.config import from_env
    from fusion.data import load_sample
    from fusion.io import check_colour_pair
    from fusion.serving import pair_hash

    key = default_pair_key(from_env())  # the pair the server prepares at start (a colour PET)
    sample = load_sample(key[len(SAMPLE_PREFIX):])
    sample = check_colour_pair(sample.mri, sample.pet, sample.pet_chroma, sample.pet_range)
    pair = pair_hash(sample.mri, sample.pet, sample.pet_chroma, sample.pet_range)
    assert hover_ok(*get(port, hover_path(key, 120, 120)))  # stores the pair; the page sends its id
    assert hover_ok(*get(port, hover_path(pair, 121, 120)))

    ok, failed, lock = [], [], threading.Lock()
    killed, served = [], threading.Event()  # the kill's time; a hover answered a second after it
    until = time.time() + 6

    def user(seed: int):
        row, col = 40 + 30 * seed, 60
        while time.time() < until or (not served.is_set() and time.time() < until + 30):
            col = 40 + (col + 3) % 180
            try:
                good = hover_ok(*get(port, hover_path(pair, row, col)))
            except (OSError, http.client.HTTPException):
                good = False
            with lock:
                (ok if good else failed).append(time.time())
                if good and killed and time.time() > killed[0] + 1:
                    served.set()

    users = [threading.Thread(target=user, args=(k,)) for k in range(4)]
    for t in users:
        t.start()
    time.sleep(2.5)
    master = psutil.Process(proc.pid)
    victim = master.children()[0]
    hover_side = {p.pid for p in victim.children(recursive=True)}
    killed.append(time.time())
    os.kill(victim.pid, signal.SIGKILL)
    for t in users:
        t.join()

    assert len(failed) <= 2, f"{len(failed)} failed requests"
    assert served.is_set(), "no hover was answered in the 30 s after the kill"
    end = time.time() + 20
    while len([c for c in master.children() if c.pid != victim.pid]) < 2 and time.time() < end:
        time.sleep(0.2)
    assert victim.pid not in {c.pid for c in master.children()} and len(master.children()) == 2
    while hover_side & group_members(proc.pid) and time.time() < end:  # its hover processes follow it
        time.sleep(0.2)
    assert not hover_side & group_members(proc.pid), "the killed worker's hover processes are still running"
    assert hover_ok(*get(port, hover_path(pair, 10, 10)))

    os.killpg(proc.pid, signal.SIGTERM)
    proc.wait(timeout=30)
    log = log_path.read_text()
    lines = [json.loads(x) for x in log.splitlines() if x.startswith('{"user"')]
    hovers = [x for x in lines if x["route"] == "/fs-api/pixel"]
    assert len(hovers) >= len(ok)
    assert {x["user"] for x in hovers} == {"local"} and {x["method"] for x in hovers} == {"GET"}
    assert all(x["status"] == 200 and x["ms"] > 0 for x in hovers)
    assert {"route": "/healthz", "status": 200}.items() <= next(x for x in lines if x["route"] == "/healthz").items()
    assert pair not in log and "?" not in "".join(x["route"] for x in lines)
