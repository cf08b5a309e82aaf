"""The URL and the controls: on load the URL sets the controls, afterwards the controls write the URL.

So a shared link reproduces the view (``state.ViewState``, ``state.encode``/``decode``).
"""
from __future__ import annotations

from dash import Input, Output, State, ctx, no_update

import fusion

from .. import backend, ids
from ..registry import Feature
from ..state import ViewState, clamp_gamma, decode, encode
from .pair import pair_options

feature = Feature(__name__)
register = feature.register

#: The controls in the URL, in the order of ``sync_url``'s arguments: (component id, property).
CONTROLS = ((ids.PAIR_SELECT, "value"), (ids.MODELS, "value"), (ids.PINNED, "data"), (ids.JAC_MODE, "value"),
            (ids.SHARED, "value"), (ids.WINDOW, "value"), (ids.GAMMA_J, "value"), (ids.GAMMA_G, "value"),
            (ids.Y_ONLY, "value"))


def default_view() -> ViewState:
    """The view of a bare URL: the configured default pair and models (those registered)."""
    cfg = backend.config()
    known = fusion.list_models()
    return ViewState(pair=backend.default_pair_key(cfg), models=tuple(m for m in cfg.default_models if m in known))


@feature.callback(
    Output(ids.URL, "search"), *[Output(i, p) for i, p in CONTROLS], Output(ids.LINK, "value"),
    Output(ids.PAIR_SELECT, "options", allow_duplicate=True),
    Input(ids.URL, "search"), *[Input(i, p) for i, p in CONTROLS], State(ids.URL, "href"),
    State(ids.UPLOADS, "data"),
    prevent_initial_call="initial_duplicate",
)
def sync_url(search, pair, models, pinned, jac, shared, window, gamma_j, gamma_g, y_only, href, uploads):
    """On load, the URL sets the controls; afterwards, the controls write the URL (one callback, no loop).

    A linked uploaded pair gets its dropdown option in the same response: a Dropdown
    drops a value that is missing from its options.
    """
    base = (href or "").split("?", 1)[0]
    if ctx.triggered_id in (None, ids.URL):
        view = decode(search, default_view(), fusion.list_models())
        pixel = None if view.pixel is None else {"row": view.pixel[0], "col": view.pixel[1]}
        return (no_update, view.pair, list(view.models), pixel, view.jac, view.range == "shared", view.window,
                view.gamma_j, view.gamma_g, view.y_only, base + encode(view), pair_options(uploads, view.pair))
    order = fusion.list_models()
    view = ViewState(pair=pair or "", models=tuple(m for m in order if m in (models or [])),
                     pixel=None if not pinned else (int(pinned["row"]), int(pinned["col"])),
                     jac=jac, range="shared" if shared else "per-map", window=window,
                     gamma_j=clamp_gamma(gamma_j), gamma_g=clamp_gamma(gamma_g), y_only=bool(y_only))
    search = encode(view)
    return (search, *[no_update] * len(CONTROLS), base + search, no_update)
