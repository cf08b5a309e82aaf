"""The images of a pair in colour: the PET input and every model's fused image, or their luminance Y alone.

A colour PET (pseudo-colour PET or SPECT) is fused on its luminance Y; the service puts the
PET's Cb/Cr back on each fused Y (``SaliencyService.fused_colour``). This feature shows those
RGB images; the switch "Y only" (``ids.Y_ONLY``) shows what the networks see instead, grey, as
for a grey pair. Hover, Jacobians, maps and histograms are about Y and do not change. A grey
pair looks exactly as before. (Each model's fused image downloads as a PNG: ``downloads``.)
"""
from __future__ import annotations

from dash import Input, Output, State, html

from .. import backend, colour, ids
from ..components import ticks_children
from ..paint import paint
from ..registry import Feature, output_ids

feature = Feature(__name__)
register = feature.register

#: Under a colour fused image, in place of the grey scale's colour bar.
COLOUR_NOTE = "colour: Y fused, Cb/Cr of PET"


def grey_uri(image) -> str:
    """An (H, W) image on [0, 1] as a grey PNG data URI (values outside clipped)."""
    return paint(image, "grey", lo_hi=(0.0, 1.0)).uri


@feature.callback(
    Output(ids.INPUT["mri"], "src"), Output(ids.INPUT["pet"], "src"),
    Input(ids.PAIR, "data"), Input(ids.Y_ONLY, "value"),
)
def show_inputs(pair, y_only):
    """MRI grey; PET in its own colours, or its Y scaled to [0, 1] as the networks see it ("Y only" or grey)."""
    a, b = backend.pair_arrays(pair["id"])
    pet = None if y_only else backend.pet_colour(pair["id"])
    return grey_uri(a), grey_uri(b) if pet is None else colour.image_uri(pet)


@feature.callback(
    Output(ids.Y_ONLY, "disabled"), Output(ids.COLOUR_NOTE, "children"),
    Input(ids.PAIR, "data"),
)
def colour_switch(pair):
    """The "Y only" switch matters for a colour PET only; say which kind of pair is shown."""
    if backend.is_colour(pair["id"]):
        return False, "colour PET: the networks fuse its Y; its colour (Cb/Cr) is put back on the fused image"
    return True, "grey PET: every image is its Y already"


@feature.callback(
    Output(ids.every(ids.IMAGE["fused"]), "src"),
    Output(ids.every(ids.COLOURBAR["fused"]), "src"),
    Output(ids.every(ids.TICKS["fused"]), "children"),
    Input(ids.GRID_VERSION, "data"), Input(ids.SHARED, "value"), Input(ids.Y_ONLY, "value"),
    State(ids.PAIR, "data"),
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
    painted = {m: paint(images[m], "grey", lo_hi=ranges[m]) for m in models}
    return ([painted[m].uri for m in models],
            [colour.colourbar_uri(painted[m].spec) for m in models],
            [ticks_children(painted[m].spec) for m in models])
