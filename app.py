"""The fusion-saliency dashboard.

    python app.py                      # http://127.0.0.1:8050 (FUSION_DASH_HOST / _PORT / _DEBUG)
    gunicorn app:server -w 2           # a shared lab server
    REDIS_URL=redis://... celery -A app:celery_app worker   # dense jobs on Celery workers

Settings come from environment variables: see ``dashboard/config.py``.
"""
from __future__ import annotations

import os

# Idle OpenMP threads sleep instead of spinning (set before torch loads): on a shared
# 2-core machine spinning threads slowed small hover computations by an order of magnitude.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import dash  # noqa: E402

import fusion  # noqa: E402
from dashboard import backend, callbacks, layout  # noqa: E402
from dashboard.config import Config, from_env  # noqa: E402
from dashboard.state import ViewState  # noqa: E402

celery_app = None


def background_manager(config: Config):
    """DiskcacheManager beside the service cache; CeleryManager when REDIS_URL is set."""
    global celery_app
    if config.redis_url:
        try:
            from celery import Celery
        except ImportError as exc:
            raise RuntimeError(
                "REDIS_URL is set, so dense jobs should run on Celery workers, but celery is not installed: "
                "pip install 'celery[redis]' (or unset REDIS_URL to run jobs locally with diskcache)") from exc
        celery_app = Celery(__name__, broker=config.redis_url, backend=config.redis_url)
        return dash.CeleryManager(celery_app)
    import diskcache

    config.jobs_dir.mkdir(parents=True, exist_ok=True)
    return dash.DiskcacheManager(diskcache.Cache(str(config.jobs_dir)))


def create_app(config: Config | None = None) -> dash.Dash:
    """Build the Dash app (layout, callbacks, background-job manager) for ``config``."""
    config = config or from_env()
    backend.configure(config)
    from fusion import data

    known = fusion.list_models()
    default = ViewState(pair=backend.default_pair_key(config),
                        models=tuple(m for m in config.default_models if m in known))
    # Bootstrap's CSS is served from assets/ (00_bootstrap.min.css, MIT): the page needs no CDN.
    app = dash.Dash(__name__, title="fusion-saliency",
                    background_callback_manager=background_manager(config),
                    suppress_callback_exceptions=True)
    app.layout = layout.page(data.list_samples(), known, default)
    callbacks.register(app)
    return app


app = create_app()
server = app.server

if __name__ == "__main__":
    cfg = backend.config()
    app.run(host=cfg.host, port=cfg.port, debug=cfg.debug)
