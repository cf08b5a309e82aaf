"""How a feature module declares its callbacks: ``feature = Feature(__name__)``, then ``@feature.callback``.

A feature records its server and clientside callbacks when it is imported; ``feature.register(app)``
attaches them to one app (once per app: a second call does nothing). Recording instead of
``@dash.callback`` lets tests build several apps in one process. ``dashboard.callbacks.register``
registers every feature of the page.
"""
from __future__ import annotations

import weakref

from dash import ctx


class Feature:
    """The callbacks of one feature of the page (server side and clientside)."""

    def __init__(self, name: str):
        self.name = name
        self.server: list[tuple[tuple, dict, object]] = []
        self.browser: list[tuple[tuple, dict]] = []
        self.apps: weakref.WeakSet = weakref.WeakSet()

    def callback(self, *args, **kwargs):
        """Decorator: record a server callback, as ``app.callback(*args, **kwargs)`` would declare it."""
        def record(func):
            self.server.append((args, kwargs, func))
            return func
        return record

    def clientside(self, *args, **kwargs) -> None:
        """Record a clientside callback (``app.clientside_callback(*args, **kwargs)``)."""
        self.browser.append((args, kwargs))

    def register(self, app) -> None:
        """Attach every recorded callback to ``app`` (once: a second call for the same app does nothing)."""
        if app in self.apps:
            return
        for args, kwargs, func in self.server:
            app.callback(*args, **kwargs)(func)
        for args, kwargs in self.browser:
            app.clientside_callback(*args, **kwargs)
        self.apps.add(app)


def output_ids(index: int) -> list[dict]:
    """The component ids behind the ``index``-th (``ALL``) output of the running callback."""
    outputs = ctx.outputs_list
    if not outputs or isinstance(outputs[0], dict):  # a callback with one (ALL) output: a flat list
        return [item["id"] for item in outputs]
    return [item["id"] for item in outputs[index]]


def by_model(kind: str) -> dict[str, object]:
    """{model: value} of the running callback's State that is an ``ALL`` pattern over the per-model
    components of type ``kind`` (e.g. every model's progress bar; only those on the page)."""
    return {item["id"]["model"]: item.get("value") for state in ctx.states_list if isinstance(state, list)
            for item in state if item["id"].get("type") == kind}
