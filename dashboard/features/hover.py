"""The browser side: clientside callbacks into ``assets/fs_hover.js``, ``fs_regions.js`` and
``fs_scatter.js`` (namespace ``fs``).

Hover runs in the browser: it draws the crosshair on every image at once and asks the hover
route (``api.py``) for the Jacobian images, tick labels and readout values, which it swaps in
itself, and moves the scatter's "hovered pixel" markers. These callbacks hand it the pair's shape,
the pinned pixel, the view settings, the region mode, the region and each new scatter figure, and
ask it for the selected pixel when "PNG" is pressed; every one also hands it ``ids.BROWSER_CONFIG``
(the ids and the route it uses).
"""
from __future__ import annotations

from dash import ClientsideFunction, Input, Output, State

from .. import ids
from ..registry import Feature

feature = Feature(__name__)
register = feature.register

CONFIG = State(ids.BROWSER_CONFIG, "data")

feature.clientside(ClientsideFunction("fs", "setShape"), Output(ids.JS_SINK, "data"), Input(ids.PAIR, "data"),
                   CONFIG)
feature.clientside(ClientsideFunction("fs", "pin"), Output(ids.JS_SINK, "data", allow_duplicate=True),
                   Input(ids.PINNED, "data"), CONFIG, prevent_initial_call="initial_duplicate")
feature.clientside(ClientsideFunction("fs", "setView"), Output(ids.JS_SINK, "data", allow_duplicate=True),
                   Input(ids.GRID_VERSION, "data"), Input(ids.JAC_MODE, "value"), Input(ids.SHARED, "value"),
                   Input(ids.GAMMA_J, "value"), CONFIG, prevent_initial_call=True)
feature.clientside(ClientsideFunction("fs", "regionMode"), Output(ids.JS_SINK, "data", allow_duplicate=True),
                   Input(ids.REGION_MODE, "value"), CONFIG, prevent_initial_call=True)
feature.clientside(ClientsideFunction("fs", "drawRegion"), Output(ids.JS_SINK, "data", allow_duplicate=True),
                   Input(ids.REGION, "data"), Input(ids.GRID_VERSION, "data"), CONFIG, prevent_initial_call=True)
feature.clientside(ClientsideFunction("fs", "scatterShown"), Output(ids.JS_SINK, "data", allow_duplicate=True),
                   Input(ids.SCATTER, "figure"), CONFIG, prevent_initial_call=True)
feature.clientside(ClientsideFunction("fs", "sheetPixel"), Output(ids.SHEET_PIXEL, "data"),
                   Input(ids.DOWNLOAD_PNG, "n_clicks"), CONFIG, prevent_initial_call=True)
