"""The images of a pair in colour: the PET input and every model's fused image, or their luminance Y alone.

A colour PET (pseudo-colour PET or SPECT) is fused on its luminance Y; the service puts the
PET's Cb/Cr back on each fused Y (``SaliencyService.fused_colour``). This module shows those
RGB images; the switch "Y only" (``fs-y-only``) shows what the networks see instead, grey, as
for a grey pair. Each model's fused image downloads as a PNG: RGB for a colour PET (unless
"Y only"), grey otherwise, as ``python -m fusion fuse`` writes it. Hover, Jacobians, maps and
histograms are about Y and do not change. A grey pair looks exactly as before.

Its callbacks are recorded with ``callbacks.cb``; ``callbacks.register`` attaches them.
"""
from __future__ import annotations

from dash import ALL, Input, Output, State, ctx, dcc, html
from dash.exceptions import PreventUpdate

from . import backend, colour
from .callbacks import cb, grey_uri, output_ids, ticks_children

#: Under a colour fused image, in place of the grey scale's colour bar.
COLOUR_NOTE = "colour: Y fused, Cb/Cr of PET"


@cb(
    Output("fs-input-mri", "src"), Output("fs-input-pet", "src"),
    Input("fs-pair", "data"), Input("fs-y-only", "value"),
)
def show_inputs(pair, y_only):
    """MRI grey; PET in its own colours, or its Y scaled to [0, 1] as the networks see it ("Y only" or grey)."""
    a, b = backend.pair_arrays(pair["id"])
    pet = None if y_only else backend.pet_colour(pair["id"])
    return grey_uri(a), grey_uri(b) if pet is None else colour.image_uri(pet)


@cb(
    Output("fs-y-only", "disabled"), Output("fs-colour-note", "children"),
    Input("fs-pair", "data"),
)
def colour_switch(pair):
    """The "Y only" switch matters for a colour PET only; say which kind of pair is shown."""
    if backend.is_colour(pair["id"]):
        return False, "colour PET: the networks fuse its Y; its colour (Cb/Cr) is put back on the fused image"
    return True, "grey PET: every image is its Y already"


@cb(
    Output({"type": "img-fused", "view": ALL, "model": ALL}, "src"),
    Output({"type": "cbar-fused", "view": ALL, "model": ALL}, "src"),
    Output({"type": "ticks-fused", "view": ALL, "model": ALL}, "children"),
    Input("fs-grid-version", "data"), Input("fs-shared", "value"), Input("fs-y-only", "value"),
    State("fs-pair", "data"),
)
def show_fused(version, shared, y_only, pair):
    """Fused images: in colour for a colour PET (as the service restores them), else Y on a grey scale
    over its actual value range (tanh outputs may be negative; "shared": one range for all models)."""
    models = [i["model"] for i in output_ids(0)]
    backend.prepare_hover(models, pair["id"])
    if not y_only and backend.is_colour(pair["id"]):
        return ([colour.image_uri(backend.fused_colour(m, pair["id"])) for m in models], [""] * len(models),
                [html.Span(COLOUR_NOTE, className="fs-colour-tick") for _ in models])
    images = {m: backend.fused(m, pair["id"]) for m in models}
    ranges = colour.limits(images, "linear", bool(shared))
    specs = {m: colour.ColourSpec(colour.GREY, "linear", *ranges[m]) for m in models}
    return ([colour.map_uri(images[m], specs[m]) for m in models],
            [colour.colourbar_uri(specs[m]) for m in models],
            [ticks_children(specs[m]) for m in models])


def fused_png(name: str, pair: dict, y_only: bool = False) -> tuple[bytes, str]:
    """One model's fused image as (PNG bytes, file name): RGB for a colour PET unless ``y_only``,
    else its Y (H, W) grey; values on [0, 1] clipped and rounded to 8 bits, as the command line saves."""
    image = backend.fused_image(name, pair["id"], y_only)
    suffix = "" if image.ndim == 3 or not backend.is_colour(pair["id"]) else "-y"
    return colour.png_bytes(colour.image_pixels(image)), f"{name}-{pair['id'][:8]}-fused{suffix}.png"


@cb(
    Output("fs-download-fused", "data"),
    Input({"type": "fused-png", "model": ALL}, "n_clicks"),
    State("fs-pair", "data"), State("fs-y-only", "value"),
    prevent_initial_call=True,
)
def download_fused(clicks, pair, y_only):
    """The "png" button of a model's column: its fused image as shown (colour, or Y with "Y only")."""
    if not isinstance(ctx.triggered_id, dict) or not any(clicks or []):
        raise PreventUpdate  # buttons drawn afresh with the grid: no click yet
    data, filename = fused_png(ctx.triggered_id["model"], pair, bool(y_only))
    return dcc.send_bytes(data, filename)
