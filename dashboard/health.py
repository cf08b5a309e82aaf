"""``GET /healthz``: a small JSON status for the lab's monitoring, answered without sign-in.

    {"status": "ok", "models": 5, "sign_in": true, "jobs": "local", "url_prefix": "/fusion/"}

503 with ``"status": "error"`` and a ``"problem"`` while sign-in is on and its users file cannot
be used (missing or malformed): then nobody can sign in. It names no user, pair or path and does no
work beyond listing the registered model names (no model is loaded) and a ``stat`` of the users
file. Served at ``/healthz`` and, behind a URL prefix, also under it.
"""
from __future__ import annotations

from flask import jsonify

import fusion

ENDPOINT = "fusion_healthz"
ROUTE = "healthz"


def status(config, sign_in=None) -> dict:
    """The JSON body of ``/healthz`` for ``config``; ``sign_in`` is the app's ``auth.UsersFile`` if any."""
    body = {"status": "ok", "models": len(fusion.list_models()), "sign_in": bool(config.auth_file),
            "jobs": "celery" if config.redis_url else "local", "url_prefix": config.url_prefix}
    if sign_in is not None and sign_in.error:
        body.update(status="error", problem="sign-in: the users file is missing or malformed (see the server's log)")
    return body


def register(app, config, sign_in=None) -> None:
    """Serve ``GET /healthz`` (and ``GET <url_prefix>healthz``) on the app's Flask server."""
    def healthz():
        body = status(config, sign_in)
        response = jsonify(body)
        response.status_code = 200 if body["status"] == "ok" else 503
        response.headers["Cache-Control"] = "no-store"
        return response

    for path in dict.fromkeys(("/" + ROUTE, config.url_prefix + ROUTE)):
        app.server.add_url_rule(path, ENDPOINT, healthz, methods=["GET"])
