"""The fusion-saliency dashboard.

    python app.py                      # http://127.0.0.1:8050 (FUSION_DASH_HOST / _PORT / _DEBUG)
    gunicorn app:server -w 2           # a shared lab server
    REDIS_URL=redis://... celery -A app:celery_app worker -c 2   # dense jobs on Celery workers

Settings come from environment variables: see ``dashboard/config.py``. A Celery worker
imports this module, so it builds the same app (and registers the same background
callbacks) from the same environment: start it from this directory with the web app's
REDIS_URL, FUSION_CACHE_DIR and FUSION_PLUGINS. Keep the default prefork pool: Cancel
stops a running job by terminating its worker process, which the solo and threads pools
cannot do (the job then runs to its end).
"""
from __future__ import annotations

import os

# Idle OpenMP threads sleep instead of spinning (set before torch loads): on a shared
# 2-core machine spinning threads slowed small hover computations by an order of magnitude.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import dash  # noqa: E402

import fusion  # noqa: E402
from dashboard import access_log, auth, backend, callbacks, guard, health, jobs, layout  # noqa: E402
from dashboard.config import Config, from_env  # noqa: E402
from dashboard.state import ViewState  # noqa: E402


def __getattr__(name: str):
    # ``celery_app`` exists once an app was built with REDIS_URL set. Without this, a worker
    # started without REDIS_URL (``celery -A app:celery_app worker``) would get None, fall back
    # to Celery's default broker (amqp://localhost) and retry it for minutes.
    if name == "celery_app":
        raise RuntimeError("app.celery_app exists only when REDIS_URL is set: start the Celery worker with the "
                           "web app's REDIS_URL (and its FUSION_CACHE_DIR and FUSION_PLUGINS)")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


CeleryManager = jobs.CeleryManager  # dash.CeleryManager behind the job line (dashboard/jobs.py)


def background_manager(config: Config):
    """DiskcacheManager beside the service cache; CeleryManager when REDIS_URL is set (sets ``celery_app``)."""
    global celery_app
    if config.redis_url:
        try:
            from celery import Celery
        except ImportError as exc:
            raise RuntimeError(
                "REDIS_URL is set, so dense jobs should run on Celery workers, but celery is not installed: "
                "pip install 'celery[redis]' (the tested version is pinned in requirements-dev.txt), "
                "or unset REDIS_URL to run jobs locally with diskcache") from exc
        celery_app = Celery(__name__, broker=config.redis_url, backend=config.redis_url)
        jobs.configure_celery(celery_app)  # one job per worker process, acknowledged late, requeued if it dies
        return CeleryManager(celery_app, config)
    import diskcache

    config.jobs_dir.mkdir(parents=True, exist_ok=True)
    return jobs.DiskcacheManager(diskcache.Cache(str(config.jobs_dir)), config)


def create_app(config: Config | None = None) -> dash.Dash:
    """Build the Dash app (layout, callbacks, background-job manager) for ``config``."""
    config = config or from_env()
    backend.configure(config)
    from fusion import data

    known = fusion.list_models()
    default = ViewState(pair=backend.default_pair_key(config),
                        models=tuple(m for m in config.default_models if m in known))
    # Bootstrap's CSS is served from assets/ (00_bootstrap.min.css, MIT): the page needs no CDN.
    manager = background_manager(config)
    app = dash.Dash(__name__, title="fusion-saliency", url_base_pathname=config.url_prefix,
                    background_callback_manager=manager, suppress_callback_exceptions=True)
    jobs.attach(app, manager)  # jobs.manager_of(app) gives it back
    access_log.register(app.server)  # one line per request: user, route without its query, status, ms
    sign_in = auth.register(app, config)  # before the guard: other hooks run for signed-in users only
    health.register(app, config, sign_in)
    guard.register(app, config)  # body size, callback bodies, errors as short JSON (dashboard/guard.py)
    app.layout = layout.page(data.list_samples(), known, default)
    callbacks.register(app)
    return app


app = create_app()
server = app.server

if __name__ == "__main__":
    cfg = backend.config()
    backend.plan_ahead()  # gunicorn: gunicorn.conf.py does this in each web worker
    app.run(host=cfg.host, port=cfg.port, debug=cfg.debug)
