"""``GET /healthz``: a small JSON status for the lab's monitoring, answered without sign-in.

    {"status": "ok", "models": 5, "sign_in": true, "jobs": "local", "url_prefix": "/fusion/"}

It names no user, pair or path and does no work beyond listing the registered model names
(no model is loaded). Served at ``/healthz`` and, behind a URL prefix, also under it.
"""
from __future__ import annotations

from flask import jsonify

import fusion

ENDPOINT = "fusion_healthz"
ROUTE = "healthz"


def status(config) -> dict:
    """The JSON body of ``/healthz`` for ``config``."""
    return {"status": "ok", "models": len(fusion.list_models()), "sign_in": bool(config.auth_file),
            "jobs": "celery" if config.redis_url else "local", "url_prefix": config.url_prefix}


def register(app, config) -> None:
    """Serve ``GET /healthz`` (and ``GET <url_prefix>healthz``) on the app's Flask server."""
    def healthz():
        response = jsonify(status(config))
        response.headers["Cache-Control"] = "no-store"
        return response

    for path in dict.fromkeys(("/" + ROUTE, config.url_prefix + ROUTE)):
        app.server.add_url_rule(path, ENDPOINT, healthz, methods=["GET"])
