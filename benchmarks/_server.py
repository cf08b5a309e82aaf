"""The gunicorn server a benchmark runs against, and its processes (for ``bench_load.py``).

``start_gunicorn`` starts ``gunicorn app:server`` with the repository's gunicorn.conf.py on loopback
in its own process group and returns once it answers; ``stop`` ends it and everything it started.
``kinds`` sorts the server's processes (the master, its web workers, and what those started: hover
worker processes and their forkserver); ``memory_mb`` and ``cpu_seconds`` measure them by kind,
``monitor`` samples memory and the load average, ``wait_until_quiet`` waits for the server's
background work to end, and ``kill_one_worker`` SIGKILLs a web worker and times its replacement.
"""
from __future__ import annotations

import http.client
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_gunicorn(port: int, cache: str, log_path: Path, extra_env: dict | None = None,
                   args: list[str] | None = None, timeout: float = 180) -> subprocess.Popen:
    """``gunicorn app:server`` with the repository's conf on 127.0.0.1:``port``; returns once it answers."""
    env = dict(os.environ, FUSION_DASH_HOST="127.0.0.1", FUSION_DASH_PORT=str(port), FUSION_CACHE_DIR=cache,
               **(extra_env or {}))
    env.pop("GUNICORN_CMD_ARGS", None)
    log = open(log_path, "ab")  # noqa: SIM115 - closed with the process by stop()
    proc = subprocess.Popen([sys.executable, "-m", "gunicorn", "app:server", "-c", str(ROOT / "gunicorn.conf.py"),
                             *(args or [])], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)
    proc.log = log
    end = time.time() + timeout
    while time.time() < end:
        if proc.poll() is not None:
            raise RuntimeError("gunicorn exited:\n" + log_path.read_text()[-3000:])
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            conn.request("GET", "/healthz")
            conn.getresponse().read()
            conn.close()
            return proc
        except OSError:
            time.sleep(0.3)
    stop(proc)
    raise RuntimeError(f"gunicorn did not answer on port {port} within {timeout:.0f} s")


def stop(proc: subprocess.Popen) -> None:
    """Stop gunicorn and everything it started (its own process group)."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
    try:  # hover workers exit on their own within a second of their web worker; make sure
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.log.close()


def web_workers(master_pid: int) -> list[psutil.Process]:
    try:
        return psutil.Process(master_pid).children()
    except psutil.NoSuchProcess:
        return []


def kinds(master_pid: int) -> dict[int, str]:
    """pid -> "master", "web" (a web worker) or "hover" (started by a web worker: hover workers, forkserver)."""
    out = {master_pid: "master"}
    for web in web_workers(master_pid):
        out[web.pid] = "web"
        try:
            out.update({p.pid: "hover" for p in web.children(recursive=True)})
        except psutil.NoSuchProcess:
            pass
    return out


def memory_mb(master_pid: int) -> dict[str, float]:
    """Sums of RSS and PSS (shared pages split between their users), MB: total, web workers, the rest they
    started; and the number of processes."""
    out = {"rss": 0.0, "pss": 0.0, "pss_web": 0.0, "pss_hover": 0.0, "n": 0}
    for pid, kind in kinds(master_pid).items():
        try:
            info = psutil.Process(pid).memory_full_info()
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        out["rss"] += info.rss / 2**20
        out["pss"] += info.pss / 2**20
        if kind != "master":
            out["pss_" + kind] += info.pss / 2**20
        out["n"] += 1
    return out


def cpu_seconds(master_pid: int) -> dict[int, tuple[str, float]]:
    """pid -> (kind, CPU seconds so far) of every server process."""
    out = {}
    for pid, kind in kinds(master_pid).items():
        try:
            t = psutil.Process(pid).cpu_times()
            out[pid] = kind, t.user + t.system
        except psutil.NoSuchProcess:
            pass
    return out


def monitor(master_pid: int, every: float, stop_event: threading.Event, rows: list) -> None:
    start = time.time()
    while True:
        rows.append((time.time() - start, memory_mb(master_pid), os.getloadavg()[0]))
        if stop_event.wait(every):
            return


def wait_until_quiet(master_pid: int, most: float, hover: bool, every: float = 5.0, cpu: float = 0.25) -> float | None:
    """Wait until the server's processes used less than ``cpu`` CPU seconds in ``every`` seconds, with hover
    processes started if ``hover``; returns the seconds waited, None after ``most``."""
    start, before = time.time(), None
    while time.time() - start < most:
        now = cpu_seconds(master_pid)
        if before is not None:
            used = sum(seconds - before.get(pid, (kind, 0.0))[1] for pid, (kind, seconds) in now.items())
            if used < cpu and (not hover or any(kind == "hover" for kind, _ in now.values())):
                return time.time() - start
        before = now
        time.sleep(every)
    return None


def kill_one_worker(master_pid: int, after: float, record: dict) -> None:
    time.sleep(after)
    workers = web_workers(master_pid)
    if not workers:
        record["error"] = "no web worker to kill"
        return
    victim = workers[0]
    record["pid"], record["t"] = victim.pid, time.time()
    os.kill(victim.pid, signal.SIGKILL)
    while time.time() - record["t"] < 30:  # the master starts a replacement
        pids = {p.pid for p in web_workers(master_pid)}
        if len(pids) >= len(workers) and victim.pid not in pids:
            record["replaced_s"] = time.time() - record["t"]
            return
        time.sleep(0.02)
