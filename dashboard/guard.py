"""The boundary of the web app: request size, Dash callback bodies, and the last-resort error answer.

``register(app, config)`` installs, on the app's Flask server:

- ``MAX_CONTENT_LENGTH = config.max_body_bytes``: a larger body is answered 413 with a short
  JSON message, before it is read.
- a check of every ``POST <prefix>_dash-update-component`` body before Dash sees it: JSON that
  parses, not too many values, the structure Dash expects, an output that names one of the app's
  callbacks, inputs and state that match that callback's, and values of the right type and size for
  this app's component properties (``VALUES``). Anything else is a 400 with a short JSON message.
- error handlers: HTTP errors of the callback and API routes answer JSON; an exception nobody
  handled is logged with its traceback on the server and answered with a short JSON message
  (400 when a callback failed on the values it was sent, else 500), never a traceback. Dash's own
  handler of ``PreventUpdate`` (204) stays, being more specific. Not installed in debug mode,
  where Dash's dev tools show the traceback.

Upload contents and file names pass here with only the size bound: the upload callbacks check
them and answer in the page.
"""
from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable

from flask import jsonify, request
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

import fusion

from . import ids
from .state import JAC_MODES, WINDOW_MODES

log = logging.getLogger(__name__)
CALLBACK_ROUTE = "_dash-update-component"
#: Most commas in one callback body (each a JSON value): bounds the memory of parsing.
MAX_VALUES = 200_000
MAX_DEPTH = 32
#: Most items of one pattern-matching (ALL) input, of the changed-property list, of a list value.
MAX_ITEMS = 256
#: Exceptions that a callback raises on values it cannot use: answered 400.
INPUT_ERRORS = (fusion.InvalidInput, ValueError, TypeError, KeyError, IndexError, AttributeError)


# ------------------------------------------------------------------ values of this app's properties
def _none_or(check: Callable) -> Callable:
    return lambda v: None if v is None else check(v)


def _text(limit: int) -> Callable:
    return lambda v: None if isinstance(v, str) and len(v) <= limit else f"a text of at most {limit} characters"


def _choice(choices) -> Callable:
    return lambda v: None if v in choices else f"one of {', '.join(map(str, choices))}"


def _number(v) -> str | None:
    ok = isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and abs(v) < 1e9
    return None if ok else "a number"


def _count(v) -> str | None:
    return None if isinstance(v, int) and not isinstance(v, bool) and 0 <= v < 10**9 else "a click count"


def _flag(v) -> str | None:
    return None if isinstance(v, bool) else "true or false"


def _names(v) -> str | None:
    limit = len(fusion.list_models())
    if not isinstance(v, list) or len(v) > limit or not all(isinstance(m, str) and len(m) <= 64 for m in v):
        return f"a list of at most {limit} model names"
    return None


def _pixel(v) -> str | None:
    if not isinstance(v, dict) or len(v) > 8 or any(
            not isinstance(v.get(k), int) or isinstance(v.get(k), bool) or abs(v[k]) > 10**6 for k in ("row", "col")):
        return "a pixel {row, col} of whole numbers"
    return None


def _pair(v) -> str | None:
    from . import backend

    sizes = [v.get(k) for k in ("h", "w")] if isinstance(v, dict) else []
    if (not isinstance(v, dict) or len(v) > 8 or not isinstance(v.get("id"), str)
            or not backend.PAIR_KEY.fullmatch(v["id"]) or any(not isinstance(v.get(k), str) or len(v[k]) > 300
                                                               for k in ("key", "label"))
            or not all(isinstance(s, int) and not isinstance(s, bool) and 0 < s <= 10**5 for s in sizes)):
        return "a resolved pair {id, key, label, h, w}"
    return None


def _uploads(v) -> str | None:
    if not isinstance(v, list) or len(v) > 64 or not all(
            isinstance(u, dict) and len(u) <= 4 and isinstance(u.get("id"), str) and len(u["id"]) <= 100
            and isinstance(u.get("label"), str) and len(u["label"]) <= 2000 for u in v):
        return "a list of uploaded pairs {id, label}"
    return None


def _version(v) -> str | None:
    if not isinstance(v, dict) or len(v) > 8 or _names(v.get("models")) or not isinstance(v.get("pair"), str):
        return "a grid version {models, window, pair, t}"
    return None


def _mapping(v) -> str | None:
    return None if isinstance(v, dict) else "an object"


#: (component id, property) -> check of its value (None: fine, else what it should be).
#: Properties not named here get only the general bounds (size, depth, structure).
VALUES: dict[tuple[str, str], Callable] = {
    (ids.URL, "search"): _none_or(_text(4096)), (ids.URL, "href"): _none_or(_text(8192)),
    (ids.PAIR_SELECT, "value"): _none_or(_text(100)),
    (ids.MODELS, "value"): _none_or(_names),
    (ids.PINNED, "data"): _none_or(_pixel), (ids.SHEET_PIXEL, "data"): _none_or(_pixel),
    (ids.JAC_MODE, "value"): _none_or(_choice(JAC_MODES)), (ids.WINDOW, "value"): _none_or(_choice(WINDOW_MODES)),
    (ids.SHARED, "value"): _none_or(_flag),
    (ids.GAMMA_J, "value"): _none_or(_number), (ids.GAMMA_G, "value"): _none_or(_number),
    (ids.MASK_THRESHOLD, "value"): _none_or(_number),
    (ids.REGION_MODE, "value"): _none_or(_choice(("hover", "box", "lasso"))),
    (ids.PAIR, "data"): _none_or(_pair), (ids.UPLOADS, "data"): _none_or(_uploads),
    (ids.GRID_VERSION, "data"): _none_or(_version),
    (ids.REGION, "data"): _none_or(_mapping), (ids.OPENED, "data"): _none_or(_mapping),
    (ids.SCATTER, "selectedData"): _none_or(_mapping),
    (ids.DENSE_CANCEL, "disabled"): _none_or(_flag),
}


def _value_check(item_id, prop: str) -> Callable | None:
    if isinstance(item_id, dict):  # pattern-matching ids: only click counts in this app
        return _none_or(_count) if prop == "n_clicks" else None
    if prop == "n_clicks":
        return _none_or(_count)
    return VALUES.get((item_id, prop))


# ------------------------------------------------------------------ structure of a callback body
class BadBody(ValueError):
    """A callback body this app cannot use; the message is sent with the 400."""


def _depth(value, limit: int = MAX_DEPTH) -> int:
    stack, deepest = [(value, 1)], 1
    while stack:
        node, depth = stack.pop()
        deepest = max(deepest, depth)
        if depth > limit:
            break
        children = node.values() if isinstance(node, dict) else node if isinstance(node, list) else ()
        stack.extend((child, depth + 1) for child in children)
    return deepest


def _same_id(sent, declared) -> bool:
    if isinstance(declared, dict):  # a pattern: the same keys, the wildcard keys matched by anything
        return isinstance(sent, dict) and sent.keys() == declared.keys() and all(
            isinstance(d, list) or sent[k] == d for k, d in declared.items())
    return sent == declared


def _check_items(sent, declared: list[dict], what: str) -> None:
    if not isinstance(sent, list) or len(sent) != len(declared):
        raise BadBody(f"'{what}' must list the callback's {len(declared)} {what}")
    for item, want in zip(sent, declared, strict=True):
        name, prop = want["id"], want["property"]
        pattern = json.loads(name) if isinstance(name, str) and name.startswith("{") else name  # ALL ids: JSON
        group = item if isinstance(pattern, dict) and isinstance(item, list) else [item]
        if len(group) > MAX_ITEMS:
            raise BadBody(f"too many components in one item of '{what}'")
        for one in group:
            if not isinstance(one, dict) or not _same_id(one.get("id"), pattern) or one.get("property") != prop:
                raise BadBody(f"an item of '{what}' is not the callback's {str(name)[:80]}.{prop}")
            check = _value_check(pattern, prop)
            problem = check(one.get("value")) if check else None
            if problem:
                raise BadBody(f"{str(name)[:80]}.{prop} must be {problem}")


def check_body(body, callback_map: dict) -> None:
    """Check a parsed callback body against the app's callbacks; raises BadBody with the reason."""
    if not isinstance(body, dict):
        raise BadBody("the body must be a JSON object")
    if _depth(body) > MAX_DEPTH:
        raise BadBody("the body is nested too deeply")
    output = body.get("output")
    if not isinstance(output, str) or output not in callback_map:
        raise BadBody("'output' names no callback of this app")
    callback = callback_map[output]
    outputs = body.get("outputs")
    if not isinstance(outputs, (dict, list)):
        raise BadBody("'outputs' must be an object or a list")
    flat = outputs if isinstance(outputs, list) else [outputs]
    for item in flat:
        group = item if isinstance(item, list) else [item]
        if len(group) > MAX_ITEMS or not all(isinstance(o, dict) and isinstance(o.get("property"), str)
                                             and isinstance(o.get("id"), (str, dict)) for o in group):
            raise BadBody("'outputs' items must be {id, property}")
    changed = body.get("changedPropIds", [])
    if not isinstance(changed, list) or len(changed) > MAX_ITEMS or not all(isinstance(c, str) for c in changed):
        raise BadBody("'changedPropIds' must be a list of texts")
    _check_items(body.get("inputs"), callback.get("inputs", []), "inputs")
    _check_items(body.get("state", []), callback.get("state", []), "state")


# ------------------------------------------------------------------ installing it
def _wants_json(prefix: str) -> bool:
    return request.path.startswith((prefix + CALLBACK_ROUTE, prefix + ids.API_PATH.lstrip("/"), prefix + "_dash-"))


def register(app, config) -> None:
    """Install the body limit, the callback-body check and the error handlers on ``app.server``."""
    server = app.server
    server.config["MAX_CONTENT_LENGTH"] = config.max_body_bytes
    prefix = app.config.routes_pathname_prefix
    route = prefix + CALLBACK_ROUTE
    limit_mb = config.max_body_bytes / 2**20

    @server.before_request
    def check_callback_body():
        if request.path != route or request.method != "POST":
            return None
        if not request.is_json:
            return jsonify(error="bad request: a callback body must be JSON (Content-Type: application/json)"), 400
        raw = request.get_data(cache=True)  # 413 (below) when over MAX_CONTENT_LENGTH, before reading
        try:
            if raw.count(b",") > MAX_VALUES:
                raise BadBody("too many values in one callback body")
            try:
                body = request.get_json(silent=True)  # parsed once: Dash reads Flask's cached copy
            except RecursionError:
                body = None
            if body is None:
                raise BadBody("the body is not JSON")
            check_body(body, app.callback_map)
        except BadBody as exc:
            return jsonify(error=f"bad request: {exc}"), 400
        return None

    @server.errorhandler(RequestEntityTooLarge)
    def too_large(_exc):
        message = (f"the request is larger than the {limit_mb:,.1f} MB this server accepts "
                   f"(files up to {config.max_upload_mb:g} MB each)")
        if _wants_json(prefix):
            return jsonify(error=message), 413
        return message + "\n", 413, {"Content-Type": "text/plain; charset=utf-8"}

    @server.errorhandler(HTTPException)
    def http_error(exc):
        if not _wants_json(prefix) or exc.code is None or exc.code < 400:
            return exc
        return jsonify(error=f"{exc.name}: {exc.description}"[:300]), exc.code

    if config.debug:
        return

    @server.errorhandler(Exception)
    def last_resort(exc):
        if isinstance(exc, HTTPException):
            return http_error(exc)
        log.error("%s %s failed", request.method, request.path, exc_info=exc)
        if request.path == route and isinstance(exc, INPUT_ERRORS):
            return jsonify(error=f"bad request: the callback could not use the values sent "
                                 f"({type(exc).__name__})"), 400
        message = f"internal error ({type(exc).__name__}); the server's log has the details"
        if _wants_json(prefix):
            return jsonify(error=message), 500
        return message + "\n", 500, {"Content-Type": "text/plain; charset=utf-8"}
