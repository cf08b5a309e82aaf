"""Every callback of the page: ``register(app)`` attaches each feature's callbacks and the hover endpoint.

Data flow (one way): URL <-> controls -> pair/models -> grid -> images. Each feature of the page
is one module of ``dashboard/features`` that declares its callbacks with ``registry.Feature``;
hover runs in the browser (``assets/fs_hover.js``) against the JSON endpoint of ``api.py``.
"""
from __future__ import annotations

from . import api
from .features import cohort, dense, downloads, grid, hover, images, maps, metrics, pair, statistics, url

#: The features of the page, in the order their callbacks are attached.
FEATURES = (url, pair, images, grid, dense, cohort, maps, statistics, metrics, downloads, hover)


def register(app) -> None:
    """Attach the hover endpoint and every feature's callbacks to ``app`` (each feature once per app)."""
    api.register(app)
    for feature in FEATURES:
        feature.register(app)
