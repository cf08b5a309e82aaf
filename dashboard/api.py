"""The hover path: one small JSON endpoint, called by ``assets/fs_hover.js``.

A hover must update every model's Jacobian panels within ~100 ms. Going through
a Dash callback cost ~25-45 ms in the browser before the request left and
~60 ms after it came back (the renderer's bookkeeping of a large layout), so
hover bypasses it: the browser asks ``GET /fs-api/pixel`` and swaps the
``src`` of the Jacobian images, the markers, tick labels and the readout
itself. Everything else (grid, dense maps, statistics) stays in Dash callbacks.

    GET /fs-api/pixel?pair=<id>&models=a,b&row=R&col=C&jac=signed&shared=0&gamma=1&win=rf
"""
from __future__ import annotations

import numpy as np
from flask import jsonify, request

import fusion

from . import backend, colour
from .state import JAC_MODES, WINDOW_MODES, clamp_gamma

VIEWS = {"jmri": "ja", "jpet": "jb"}
ROUTE = "/fs-api/pixel"


def jac_spec(mode: str, gamma: float) -> colour.ColourSpec:
    """How a Jacobian is coloured: diverging around 0 (signed) or sequential (magnitude)."""
    scale = colour.DIVERGING if mode == "signed" else colour.SEQUENTIAL
    return colour.ColourSpec(scale, mode, -1.0 if mode == "signed" else 0.0, 1.0, clamp_gamma(gamma))


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
    base = jac_spec(mode, gamma)
    for m, r in results.items():
        top, bottom, left, right = r.window
        total_a, total_b = float(np.abs(r.ja).sum()), float(np.abs(r.jb).sum())
        entry = {"value": float(r.value), "dmri": float(r.ja[row, col]), "dpet": float(r.jb[row, col]),
                 "share": total_a / (total_a + total_b) if total_a + total_b > 0 else 0.5,
                 "method": r.method, "window": [int(top), int(bottom), int(left), int(right)], "ticks": {},
                 "mark": None if window != "rf" else {
                     "top": 100 * (row - top) / (bottom - top), "left": 100 * (col - left) / (right - left),
                     "height": 100 / (bottom - top), "width": 100 / (right - left)}}
        for view in VIEWS:
            spec = colour.with_range(base, ranges[(m, view)])
            entry[view] = colour.map_uri(shown[(m, view)], spec)
            entry["ticks"][view] = [[pos, text] for pos, text in colour.ticks(spec)]
        out["models"][m] = entry
    return out


def pixel_view():
    """Flask view of ``ROUTE``; bad parameters answer 400 with a message."""
    args = request.args
    try:
        models = [m for m in args.get("models", "").split(",") if m]
        row, col, key = int(args["row"]), int(args["col"]), args["pair"]
    except (KeyError, ValueError) as exc:
        return jsonify(error=f"bad request: {exc}"), 400
    try:
        pair = backend.resolve_pair(key)
    except (fusion.InvalidInput, KeyError) as exc:  # an unknown or expired pair
        return jsonify(error=str(exc)), 404
    mode = args.get("jac") if args.get("jac") in JAC_MODES else "signed"
    window = args.get("win") if args.get("win") in WINDOW_MODES else "rf"
    payload = pixel_payload(pair["id"], models, row, col, mode, args.get("shared") in ("1", "true"),
                            clamp_gamma(args.get("gamma", 1.0)), window)
    payload["seq"] = args.get("seq")
    return jsonify(payload)


def register(app) -> None:
    """Add the hover endpoint to the app's Flask server, under the app's URL prefix."""
    app.server.add_url_rule(app.config.routes_pathname_prefix + ROUTE.lstrip("/"), "fs_pixel", pixel_view)
