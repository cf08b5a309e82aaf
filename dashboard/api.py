"""The hover path: one small JSON endpoint, called by ``assets/fs_hover.js``.

A hover must update every model's Jacobian panels within ~100 ms. Going through
a Dash callback cost ~25-45 ms in the browser before the request left and
~60 ms after it came back (the renderer's bookkeeping of a large layout), so
hover bypasses it: the browser asks ``GET /fs-api/pixel`` and swaps the
``src`` of the Jacobian images, the markers, tick labels and the readout
itself. Everything else (grid, dense maps, statistics) stays in Dash callbacks.

    GET /fs-api/pixel?pair=<id>&models=a,b&row=R&col=C&jac=signed&shared=0&gamma=1&win=rf

Every parameter is checked and length-bounded before any work (``hover_request``): a bad one
answers 400, an unknown pair 404, each with a JSON ``{"error": message}``.
"""
from __future__ import annotations

import math
import re

import numpy as np
from flask import jsonify, request

import fusion

from . import backend, colour, ids
from .paint import paint
from .state import JAC_MODES, WINDOW_MODES, clamp_gamma

VIEWS = {"jmri": "ja", "jpet": "jb"}
ROUTE = ids.HOVER_ROUTE


def pixel_payload(pair_id: str, models: list[str], row: int, col: int, mode: str = "signed",
                  shared: bool = False, gamma: float = 1.0, window: str = "rf") -> dict:
    """Everything the page shows for one selected pixel, as JSON-ready data.

    Returns {"row", "col", "mri", "pet", "models": {name: {"jmri", "jpet" (PNG data URIs),
    "ticks": {view: [[position, text], ...]}, "mark" (marker box in % of the shown window, or
    None at full size), "window", "value", "dmri", "dpet", "share", "method"} or {"error"}}}.
    """
    a, b = backend.pair_arrays(pair_id)
    h, w = a.shape
    row, col = min(max(int(row), 0), h - 1), min(max(int(col), 0), w - 1)
    out = {"row": row, "col": col, "mri": float(a[row, col]), "pet": float(b[row, col]), "models": {}}
    try:
        results = backend.pixels(models, pair_id, row, col) if models else {}
    except Exception as exc:  # noqa: BLE001 - report it in the readout, keep the page alive
        out["models"] = {m: {"error": f"{type(exc).__name__}: {exc}"} for m in models}
        return out
    shown = {}
    for m, r in results.items():
        top, bottom, left, right = r.window if window == "rf" else (0, h, 0, w)
        for view, attr in VIEWS.items():
            shown[(m, view)] = getattr(r, attr)[top:bottom, left:right]
    ranges = colour.limits(shown, mode, shared)
    for m, r in results.items():
        top, bottom, left, right = r.window
        inside = (slice(top, bottom), slice(left, right))  # the Jacobian is zero outside its window
        total_a, total_b = float(np.abs(r.ja[inside]).sum()), float(np.abs(r.jb[inside]).sum())
        entry = {"value": float(r.value), "dmri": float(r.ja[row, col]), "dpet": float(r.jb[row, col]),
                 "share": total_a / (total_a + total_b) if total_a + total_b > 0 else 0.5,
                 "method": r.method, "window": [int(top), int(bottom), int(left), int(right)], "ticks": {},
                 "mark": None if window != "rf" else {
                     "top": 100 * (row - top) / (bottom - top), "left": 100 * (col - left) / (right - left),
                     "height": 100 / (bottom - top), "width": 100 / (right - left)}}
        for view in VIEWS:
            painted = paint(shown[(m, view)], "derivative", mode, gamma, ranges[(m, view)])
            entry[view], entry["ticks"][view] = painted.uri, painted.ticks
        out["models"][m] = entry
    return out


class BadRequest(ValueError):
    """A hover parameter that cannot be used; its message is sent with the 400."""


#: Longest value of each parameter, in characters (models: the comma-separated list).
PARAM_CHARS = {"pair": 100, "models": 1000, "row": 10, "col": 10, "jac": 16, "win": 16, "shared": 8,
               "gamma": 24, "seq": 24}
_INTEGER = re.compile(r"-?[0-9]{1,9}")
_FLAGS = {"1": True, "true": True, "0": False, "false": False}


def _param(args, name: str, default: str | None = None) -> str:
    values = args.getlist(name)
    if not values:
        if default is None:
            raise BadRequest(f"missing parameter {name!r}")
        return default
    if len(values) > 1:
        raise BadRequest(f"parameter {name!r} given {len(values)} times")
    if len(values[0]) > PARAM_CHARS[name]:
        raise BadRequest(f"parameter {name!r} is longer than {PARAM_CHARS[name]} characters")
    return values[0]


def _integer(args, name: str) -> int:
    text = _param(args, name)
    if not _INTEGER.fullmatch(text):
        raise BadRequest(f"parameter {name!r} must be a whole number, got {text!r}")
    return int(text)


def _choice(args, name: str, choices, default: str) -> str:
    text = _param(args, name, default)
    if text not in choices:
        raise BadRequest(f"parameter {name!r} must be one of {', '.join(choices)}, got {text!r}")
    return text


def _gamma(args) -> float:
    text = _param(args, "gamma", "1")
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not math.isfinite(value):
        raise BadRequest(f"parameter 'gamma' must be a number, got {text!r}")
    return clamp_gamma(value)


def check_models(names: list[str], limit: int) -> list[str]:
    """Unique registered model names, in the order given; raises BadRequest naming unknown ones."""
    unique = list(dict.fromkeys(names))
    known = set(fusion.list_models())
    unknown = [n for n in unique if n not in known]
    if unknown:
        shown = ", ".join(repr(n[:40]) for n in unknown[:5])
        shown += f" and {len(unknown) - 5} more" if len(unknown) > 5 else ""
        raise BadRequest(f"unknown model{'s' if len(unknown) > 1 else ''} {shown}")
    if len(unique) > limit:
        raise BadRequest(f"{len(unique)} models asked for; at most {limit} per request")
    return unique


def hover_request(args) -> dict:
    """The checked parameters of one hover request (raises BadRequest with the reason)."""
    if len(args) > len(PARAM_CHARS) + 8:
        raise BadRequest("too many parameters")
    key = _param(args, "pair")
    if not backend.PAIR_KEY.fullmatch(key):
        raise BadRequest("parameter 'pair' is not a pair key (a bundled sample or an uploaded pair's id)")
    models = check_models([m for m in _param(args, "models", "").split(",") if m], backend.config().max_models)
    seq = _param(args, "seq", "")
    if seq and not _INTEGER.fullmatch(seq):
        raise BadRequest(f"parameter 'seq' must be a whole number, got {seq!r}")
    shared = _param(args, "shared", "0")
    if shared not in _FLAGS:
        raise BadRequest(f"parameter 'shared' must be 0 or 1, got {shared!r}")
    return {"key": key, "models": models, "row": _integer(args, "row"), "col": _integer(args, "col"),
            "mode": _choice(args, "jac", JAC_MODES, "signed"), "window": _choice(args, "win", WINDOW_MODES, "rf"),
            "shared": _FLAGS[shared], "gamma": _gamma(args), "seq": seq or None}


def pixel_view():
    """Flask view of ``ROUTE``: bad parameters answer 400, an unknown pair 404, each with a JSON message.

    ``models``: unique registered names (duplicates are dropped), at most ``Config.max_models``;
    row and col are clamped into the image.
    """
    try:
        query = hover_request(request.args)
    except BadRequest as exc:
        return jsonify(error=f"bad request: {exc}"), 400
    try:
        pair = backend.resolve_pair(query["key"])
    except (fusion.InvalidInput, KeyError) as exc:  # an unknown or expired pair
        return jsonify(error=str(exc).strip("'\"")), 404
    payload = pixel_payload(pair["id"], query["models"], query["row"], query["col"], query["mode"], query["shared"],
                            query["gamma"], query["window"])
    payload["seq"] = query["seq"]
    return jsonify(payload)


def register(app) -> None:
    """Add the hover endpoint to the app's Flask server, under the app's URL prefix."""
    app.server.add_url_rule(app.config.routes_pathname_prefix + ROUTE.lstrip("/"), "fs_pixel", pixel_view)
