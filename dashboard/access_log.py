"""One JSON line per request on the ``fusion.access`` logger: who asked for which route, and how it went.

    {"user": "ada", "method": "GET", "route": "/fs-api/pixel", "status": 200, "ms": 41.7, "bytes": 7402}

``user`` is ``dashboard.auth.current_user()`` ("local" without sign-in), "-" on a 401 answer.

``route`` is the path without its query string: hover requests carry pair ids (content hashes of
images a user uploaded) in their query, and those of one user must not reach a log that other
people read. Paths and user names come from the request, so they are cut to a bounded length and
written as JSON strings (no line breaks or quotes of their own). Without a handler configured for the
logger (as under gunicorn), lines go to standard error, which gunicorn and systemd keep as the error log.
"""
from __future__ import annotations

import json
import logging
import sys
import time

from flask import Flask, g, request

from .auth import current_user

LOGGER = "fusion.access"
#: Longest route and user name written (both come from the request).
MAX_FIELD = 200


def logger() -> logging.Logger:
    """The access logger; given a plain stderr handler at INFO unless something configured it already."""
    log = logging.getLogger(LOGGER)
    if not log.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(message)s"))
        log.addHandler(handler)
        log.setLevel(logging.INFO)
        log.propagate = False
    return log


def line(user: str, method: str, route: str, status: int, ms: float, size: int | None) -> str:
    """The JSON access line of one request."""
    return json.dumps({"user": user[:MAX_FIELD], "method": method[:16], "route": route[:MAX_FIELD],
                       "status": int(status), "ms": round(ms, 1), "bytes": size}, ensure_ascii=True)


def register(server: Flask) -> None:
    """Log every request of ``server``: the clock starts before every other request hook (sign-in included)
    and stops after every other response hook."""
    log = logger()

    def start():
        g.access_start = time.perf_counter()

    def finish(response):
        started = g.get("access_start")
        ms = 1000 * (time.perf_counter() - started) if started is not None else 0.0
        route = request.script_root + request.path
        user = "-" if response.status_code == 401 else current_user()  # 401: nobody signed in
        log.info(line(user, request.method, route, response.status_code, ms, response.content_length))
        return response

    server.before_request_funcs.setdefault(None, []).insert(0, start)
    server.after_request_funcs.setdefault(None, []).insert(0, finish)  # they run last to first: this one last
