"""The whole-image maps of every column: guidance maps, RGB composite and MRI share.

From the shared cache once a model's job is done (``show_dense``), or, while a job runs, its coarse
preview that refines (shown by the browser, ``showPreview``, with a note from ``dense.model_status``);
otherwise a note saying why a map is empty.
"""
from __future__ import annotations

from dash import ClientsideFunction, Input, Output, State
from dash.exceptions import PreventUpdate

from .. import backend, colour, components, ids
from ..paint import DENSE_MAPS, dense_views
from ..registry import Feature, output_ids

feature = Feature(__name__)
register = feature.register


@feature.callback(
    Output(ids.every(ids.IMAGE["dense"]), "src"),
    Output(ids.every(ids.EMPTY), "children"),
    Output(ids.every(ids.COLOURBAR["dense"]), "src"),
    Output(ids.every(ids.TICKS["dense"]), "children"),
    Input(ids.DENSE_STATUS, "data"),
    Input(ids.JAC_MODE, "value"), Input(ids.SHARED, "value"), Input(ids.GAMMA_G, "value"),
)
def show_dense(status, mode, shared, gamma):
    """Guidance maps, RGB composite and MRI share from the shared cache, or a deliberate empty state."""
    ids_ = output_ids(0)
    if not status:
        raise PreventUpdate
    pair_id = status["pair"]
    maps = {}
    for m in dict.fromkeys(i["model"] for i in ids_):
        d = backend.dense_maps(m, pair_id) if status["models"].get(m, {}).get("state") == "done" else None
        if d is not None:
            maps[m] = (d, backend.fused(m, pair_id))
    shared_ranges = None
    if shared and maps:
        shared_ranges = {view: colour.limits({m: mp[name] for m, (mp, _) in maps.items()}, mode, True)
                         .popitem()[1] for view, name in DENSE_MAPS.items() if view != "share"}
    rendered = {m: dense_views(mp, fused, mode, gamma, shared_ranges) for m, (mp, fused) in maps.items()}
    srcs, empties = [], []
    for i in ids_:
        m, view = i["model"], i["view"]
        srcs.append(rendered[m][view][0] if m in rendered else "")
        empties.append("" if m in rendered else components.empty_text(status["models"].get(m, {}), {}))
    bars, ticks = [], []
    for i in output_ids(2):
        spec = rendered.get(i["model"], {}).get(i["view"], (None, None))[1]
        bars.append(colour.colourbar_uri(spec) if spec else "")
        ticks.append(components.ticks_children(spec) if spec else "")
    return srcs, empties, bars, ticks


feature.clientside(ClientsideFunction("fs", "showPreview"),
                   Output(ids.every(ids.IMAGE["dense"]), "src", allow_duplicate=True),
                   Input(ids.DENSE_PREVIEW, "data"), State(ids.DENSE_STATUS, "data"),
                   State(ids.DENSE_CANCEL, "disabled"),
                   prevent_initial_call=True)

