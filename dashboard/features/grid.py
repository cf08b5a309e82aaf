"""The comparison grid (one column per model), its Jacobian colour bars, the pin badge and model cards.

The grid is rebuilt only when the models, the window mode or the pair change, never on hover;
``ids.GRID_VERSION`` says which grid is on the page, and the other features follow it.
"""
from __future__ import annotations

import time

from dash import Input, Output, ctx
from dash.exceptions import PreventUpdate

import fusion

from .. import backend, colour, components, ids
from ..paint import spec
from ..panels import grid
from ..registry import Feature, output_ids

feature = Feature(__name__)
register = feature.register


@feature.callback(
    Output(ids.GRID, "children"), Output(ids.GRID_VERSION, "data"),
    Input(ids.MODELS, "value"), Input(ids.WINDOW, "value"), Input(ids.PAIR, "data"),
)
def render_grid(models, window, pair):
    """Rebuild the comparison grid (only when models, window mode or pair change; never on hover)."""
    models = [m for m in fusion.list_models() if m in (models or [])]
    infos, offsets = {}, {}
    for m in models:
        try:
            infos[m] = backend.model_info(m)
            offsets[m] = backend.rf_offsets(infos[m])
        except Exception as exc:  # noqa: BLE001 - a broken plugin must not take the page down
            infos[m] = {"name": m, "method": "unavailable", "reason": str(exc)}
    version = {"models": models, "window": window, "pair": pair["id"], "t": time.time()}
    return grid(models, infos, window, offsets), version


@feature.callback(
    Output(ids.every(ids.COLOURBAR["jacobian"]), "src"),
    Input(ids.GRID_VERSION, "data"), Input(ids.JAC_MODE, "value"), Input(ids.GAMMA_J, "value"),
)
def jacobian_colourbars(version, mode, gamma):
    """The Jacobian bars depend on mode and gamma only (their tick labels follow the hover)."""
    return [colour.colourbar_uri(spec("derivative", mode, gamma))] * len(output_ids(0))


@feature.callback(
    Output(ids.PIN_BADGE, "children"),
    Input(ids.PINNED, "data"),
)
def pin_badge(pinned):
    """How to select a pixel, or where it is pinned."""
    return components.pin_badge(pinned)


@feature.callback(
    Output(ids.CARD_MODAL, "is_open"), Output(ids.CARD_TITLE, "children"), Output(ids.CARD_BODY, "children"),
    Input(ids.every(ids.CARD_BUTTON, views=False), "n_clicks"),
    prevent_initial_call=True,
)
def show_card(clicks):
    """A column's "card" button: the model card in the modal."""
    if not ctx.triggered_id or not any(clicks):
        raise PreventUpdate
    name = ctx.triggered_id["model"]
    return True, f"Model card: {name}", components.card_body(backend.model_info(name))
