"""gunicorn settings of a shared lab server: ``gunicorn app:server`` in this directory reads this file.

Where the time goes: a hover's saliency is computed in the hover worker processes that every web
worker starts (``FUSION_HOVER_PROCESSES``; see the sizing rule), not in the web worker, which parses the
request, colours the small Jacobian windows into PNGs and writes the JSON. So the cores are used by
the hover processes of all web workers together, and web workers are for resilience and for
overlapping that web work with the computation.

Sizing rule (the defaults below; any setting can be overridden on the command line, e.g. ``-w 4``):
    web workers      W = max(2, cores // 2): always a second web worker to serve while one is replaced;
                     then lowered to what memory holds: W <= (0.8 x RAM - 1 GB) / (M_web + P x M_hover)
                     with M_web = 0.8 GB and M_hover = FUSION_HOVER_MEMORY_MB (1 GB) + 0.5 GB; a
                     Celery worker on the same machine needs about 1 GB per process besides
    hover processes  P = max(1, cores // W) per web worker, so about one per core in all: the hover
                     processes do the computing, and more of them than cores only take turns on the
                     cores (docs/benchmarks.md: 2 x 1 against 2 x 2 on 2 cores). A web worker's two
                     hovers at once meet in its hover processes and are computed as one batch.
                     FUSION_HOVER_PROCESSES, where set, fixes P (0: hovers in threads of the web
                     worker), and then W = max(2, cores // P)
    threads          2 per web worker: one colours and sends an answer while the other's hover is
                     computed. Each worker accepts only as many connections as it has threads, so
                     the rest wait in the listening socket, which every worker shares: a web worker
                     that dies loses at most its 2 requests in progress, never a queue of them
    timeout          the gthread worker's main loop reports to the master between requests and during
                     them, so ``timeout`` only replaces a worker that hangs as a whole: a long request
                     (a first visit, an upload) is never killed by it
    graceful_timeout requests in progress get this long to finish on a restart (HUP) or stop (TERM)
    max_requests     0: workers are not recycled (memory stays flat under load; a new worker starts
                     PyTorch and its hover processes again, seconds of CPU)
    preload_app      off: every web worker imports the app (PyTorch, the models) itself. Forking
                     from a master that has loaded PyTorch and opened SQLite connections is unsafe,
                     and a code upgrade then takes effect on HUP.

Bind address and port come from FUSION_DASH_HOST and FUSION_DASH_PORT (``dashboard/config.py``); behind
a reverse proxy keep 127.0.0.1. Access lines (user, method, route, status, ms) are written by the
app itself (``dashboard/access_log.py``) to the error log, so gunicorn's own access log stays off.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys

_HERE = os.path.dirname(os.path.abspath(__file__))
_READ_SETTINGS = ("import json; from dashboard.config import from_env; from fusion.settings import read; "
                  "c = from_env(); print(json.dumps({'host': c.host, 'port': c.port, "
                  "'hover_processes': c.hover_processes, 'hover_processes_set': read('hover_processes') is not None, "
                  "'hover_memory_mb': read('hover_memory_mb')}))")


def _settings() -> dict:
    """``dashboard.config.from_env()`` (all settings validated), run in a child interpreter.

    Reading it here would import PyTorch into the master (the device check loads ``fusion``): the
    master would hold it, the workers would inherit it half-loaded, and a reload (HUP) would keep
    serving the old ``fusion`` and ``dashboard.config`` code. A bad setting stops the server here.
    """
    done = subprocess.run([sys.executable, "-c", _READ_SETTINGS], cwd=_HERE, capture_output=True, text=True)
    if done.returncode != 0:
        lines = done.stderr.strip().splitlines() or ["(no message)"]
        raise SystemExit(f"fusion-saliency: bad settings: {lines[-1]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


_config = _settings()


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def _memory_gb() -> float:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    except (AttributeError, ValueError, OSError):
        return 0.0  # unknown: no memory cap


def sizes(cores: int, memory_gb: float, hover_memory_gb: float = 1.0, hover_processes: int | None = None
          ) -> tuple[int, int]:
    """(web workers W, hover processes P per web worker) by the sizing rule of the module docstring.

    ``hover_processes``: P where FUSION_HOVER_PROCESSES sets it, else None (one per core in all).
    """
    if hover_processes is None:
        wanted = max(2, cores // 2)
        processes = max(1, cores // wanted)
    else:
        wanted = max(2, cores // hover_processes if hover_processes else cores)
        processes = hover_processes
    if memory_gb <= 0:
        return wanted, processes
    per_worker = 0.8 + processes * (hover_memory_gb + 0.5)
    return max(1, min(wanted, int((0.8 * memory_gb - 1.0) // per_worker))), processes


_explicit = _config["hover_processes_set"]
workers, _hover_processes = sizes(_cores(), _memory_gb(), _config["hover_memory_mb"] / 1024,
                                  _config["hover_processes"] if _explicit else None)
raw_env = [] if _explicit else [f"FUSION_HOVER_PROCESSES={_hover_processes}"]
bind = f"{_config['host']}:{_config['port']}"
worker_class = "gthread"
threads = 2
worker_connections = threads
keepalive = 0            # no idle connections held by a worker (a reverse proxy opens one per request)
timeout = 60
graceful_timeout = 30
max_requests = 0
preload_app = False
limit_request_line = 8190
errorlog = "-"
loglevel = "info"
accesslog = None
control_socket_disable = True  # no shared ~/.gunicorn/gunicorn.ctl between servers of one account
proc_name = "fusion-saliency"


def post_worker_init(worker) -> None:
    """In each web worker, once the app is loaded: plan the bundled models and prepare the default pair's
    hovers in the background (``dashboard.backend.plan_ahead``), so first visits find them ready."""
    from dashboard import backend

    try:
        backend.plan_ahead()
    except Exception:  # noqa: BLE001 - the server serves without it (first hovers are then slower)
        worker.log.exception("planning ahead failed; hovers are planned on first use instead")
