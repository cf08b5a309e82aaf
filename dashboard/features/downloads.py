"""Downloads: the current figures as one PNG sheet, the statistics and metrics as CSV, one model's dense
result as HDF5, and one model's fused image as PNG (colour, or Y with "Y only")."""
from __future__ import annotations

from dash import Input, Output, State, ctx, dcc
from dash.exceptions import PreventUpdate

from .. import backend, colour, figures, ids
from ..paint import DENSE_MAPS, paint
from ..panels import JACOBIAN_VIEWS, VIEW_BY_KEY
from ..registry import Feature
from ..state import clamp_gamma, clamp_pixel
from .metrics import metrics_rows, statistics_csv

feature = Feature(__name__)
register = feature.register


@feature.callback(
    Output(ids.DOWNLOAD, "data"),
    Input(ids.SHEET_PIXEL, "data"), Input(ids.DOWNLOAD_CSV, "n_clicks"),
    Input(ids.every(ids.HDF5, views=False), "n_clicks"),
    State(ids.PAIR, "data"), State(ids.GRID_VERSION, "data"), State(ids.JAC_MODE, "value"), State(ids.SHARED, "value"),
    State(ids.GAMMA_J, "value"), State(ids.GAMMA_G, "value"), State(ids.STATS_ROWS, "data"),
    State(ids.Y_ONLY, "value"), State(ids.MASK_THRESHOLD, "value"),
    prevent_initial_call=True,
)
def download(pixel, _csv, h5_clicks, pair, version, mode, shared, gamma_j, gamma_g, rows, y_only, threshold):
    """The current figures as one PNG sheet (at ``pixel``: the browser's selected pixel when "PNG" was pressed,
    ``hover.sheetPixel``), the statistics and quality metrics as CSV, or one model's dense result as HDF5."""
    trigger = ctx.triggered_id
    if trigger == ids.DOWNLOAD_CSV:
        models = (version or {}).get("models", [])
        if not rows and not models:
            raise PreventUpdate
        quality = metrics_rows(pair["id"], models, threshold)
        return dict(content=statistics_csv(rows or [], quality), filename="mri-share-statistics.csv",
                    type="text/csv")
    if isinstance(trigger, dict):
        if not any(h5_clicks):
            raise PreventUpdate
        content = backend.dense_hdf5(trigger["model"], pair["id"])
        if content is None:
            raise PreventUpdate
        return dcc.send_bytes(content, f"{trigger['model']}-{pair['id'][:8]}.h5")
    if trigger == ids.SHEET_PIXEL and pixel:
        return dcc.send_bytes(figure_sheet(pair, version, pixel, mode, shared, gamma_j, gamma_g,
                                           bool(y_only)), "fusion-saliency.png")
    raise PreventUpdate


def figure_sheet(pair, version, pixel, mode, shared, gamma_j, gamma_g, y_only=False) -> bytes:
    """Re-colour the current view on the server into one labelled PNG sheet (fused images in colour
    for a colour PET unless ``y_only``), with the colouring of the page (``paint``)."""
    models = (version or {}).get("models", [])
    row, col = clamp_pixel(pixel, pair["h"], pair["w"])
    results = backend.pixels(models, pair["id"], row, col) if models else {}
    jac = {}
    for m, r in results.items():
        top, bottom, left, right = r.window
        jac[(m, "jmri")], jac[(m, "jpet")] = r.ja[top:bottom, left:right], r.jb[top:bottom, left:right]
    ranges = colour.limits(jac, mode, bool(shared))
    fused = {m: backend.fused_image(m, pair["id"], y_only) for m in models}
    rows = [("Fused F", [colour.image_pixels(f) if f.ndim == 3 else paint(f, "grey").pixels
                         for f in fused.values()])]
    for view in JACOBIAN_VIEWS:
        rows.append((f"{VIEW_BY_KEY[view].title} at ({row},{col})",
                     [paint(jac[(m, view)], "derivative", mode, gamma_j, ranges[(m, view)]).pixels
                      if (m, view) in jac else None for m in models]))
    dense = {m: backend.dense_maps(m, pair["id"]) for m in models}
    for view, name in DENSE_MAPS.items():
        kind = "share" if view == "share" else "derivative"
        rows.append((VIEW_BY_KEY[view].title,
                     [None if dense.get(m) is None else paint(dense[m][name], kind, mode, gamma_g).pixels
                      for m in models]))
    return figures.sheet_png(models, rows, title=f"{pair['label']} · pixel ({row}, {col}) · {mode} · "
                                                  f"gamma J {clamp_gamma(gamma_j)} · gamma G {clamp_gamma(gamma_g)}")


def fused_png(name: str, pair: dict, y_only: bool = False) -> tuple[bytes, str]:
    """One model's fused image as (PNG bytes, file name): RGB for a colour PET unless ``y_only``,
    else its Y (H, W) grey; values on [0, 1] clipped and rounded to 8 bits, as the command line saves."""
    image = backend.fused_image(name, pair["id"], y_only)
    suffix = "" if image.ndim == 3 or not backend.is_colour(pair["id"]) else "-y"
    return colour.png_bytes(colour.image_pixels(image)), f"{name}-{pair['id'][:8]}-fused{suffix}.png"


@feature.callback(
    Output(ids.DOWNLOAD_FUSED, "data"),
    Input(ids.every(ids.FUSED_PNG, views=False), "n_clicks"),
    State(ids.PAIR, "data"), State(ids.Y_ONLY, "value"),
    prevent_initial_call=True,
)
def download_fused(clicks, pair, y_only):
    """The "png" button of a model's column: its fused image as shown (colour, or Y with "Y only")."""
    if not isinstance(ctx.triggered_id, dict) or not any(clicks or []):
        raise PreventUpdate  # buttons drawn afresh with the grid: no click yet
    data, filename = fused_png(ctx.triggered_id["model"], pair, bool(y_only))
    return dcc.send_bytes(data, filename)
