"""The comparison grid: one column per model, one row per view, built by one function and a loop.

Ids are pattern-matching dicts ``{"type": "<what>-<kind>", "view", "model"}``
(e.g. ``img-jacobian``; the types are in ``ids.py``), so one callback with ``ALL`` serves every
model and a view kind at once. Every image sits in a ``.fs-frame``; frames of full-size images (class
``fs-full``) are hover sources and carry the crosshair: their ``::before`` and ``::after`` lines, placed
by two CSS variables that ``assets/fs_hover.js`` sets (no element per line: the fewer components, the
less each Dash update costs the browser). Zoomed Jacobian frames (``fs-zoom``) show the model's
own receptive-field window; their marker is placed by the server, which knows
the window.
"""
from __future__ import annotations

from dataclasses import dataclass

import dash_bootstrap_components as dbc
from dash import html

from . import ids
from .ids import pid


@dataclass(frozen=True)
class View:
    key: str
    title: str
    unit: str          # shown under the colour bar
    kind: str          # "fused", "jacobian" (per hovered pixel) or "dense" (whole-image job)
    colourbar: bool = True


VIEWS = (
    View("fused", "Fused image F", "intensity", "fused"),
    View("jmri", "∂F(p)/∂MRI", "dF/dMRI, per unit intensity", "jacobian"),
    View("jpet", "∂F(p)/∂PET", "dF/dPET, per unit intensity", "jacobian"),
    View("gmri", "G_MRI = ∂F(p)/∂MRI(p)", "dF/dMRI at the same pixel", "dense"),
    View("gpet", "G_PET = ∂F(p)/∂PET(p)", "dF/dPET at the same pixel", "dense"),
    View("rgb", "Guidance RGB", "R = G_MRI, G = G_PET, B = F (each min–max)", "dense", colourbar=False),
    View("share", "MRI share", "share of influence: 0 = PET only, 1 = MRI only", "dense"),
)
VIEW_BY_KEY = {v.key: v for v in VIEWS}
JACOBIAN_VIEWS = tuple(v.key for v in VIEWS if v.kind == "jacobian")
DENSE_VIEWS = tuple(v.key for v in VIEWS if v.kind == "dense")


def frame(image_id, hoverable: bool, extra=(), rf: tuple[int, int, int, int] | None = None, label: str = ""):
    """An image with its overlays. ``rf`` = (up, down, left, right) draws the model's RF box on hover."""
    attrs = {}
    if rf is not None:
        attrs = {"data-rf": ",".join(str(int(v)) for v in rf)}
    children = [html.Img(id=image_id, className="fs-img", alt=label, draggable="false")]
    if hoverable and rf is not None:
        children.append(html.Div(className="fs-rfbox"))
    children += list(extra)
    return html.Div(children, className="fs-frame " + ("fs-full" if hoverable else "fs-zoom"), **attrs)


def colourbar(view: View, model: str):
    """A colour bar: an image coloured like the map, tick labels set by callbacks, and the unit."""
    return html.Div([
        html.Img(id=pid(ids.COLOURBAR[view.kind], model, view.key), className="fs-cbar-img"),
        html.Div(id=pid(ids.TICKS[view.kind], model, view.key), className="fs-ticks"),
        html.Div(view.unit, className="fs-unit"),
    ], className="fs-cbar")


def cell(view: View, model: str, window: str, rf: tuple[int, int, int, int] | None):
    """One grid cell: the image of ``view`` for ``model``, its overlays and colour bar."""
    extra = []
    hoverable = not (view.kind == "jacobian" and window == "rf")
    if view.kind == "jacobian" and window == "rf":
        extra.append(html.Div(id=pid(ids.MARK, model, view.key), className="fs-mark"))
    if view.kind == "dense":
        extra.append(html.Div(id=pid(ids.EMPTY, model, view.key), className="fs-empty"))
    image = frame(pid(ids.IMAGE[view.kind], model, view.key), hoverable, extra,
                  rf=rf if view.key == "fused" else None, label=f"{view.title} of {model}")
    parts = [image]
    if view.colourbar:
        parts.append(colourbar(view, model))
    else:
        parts.append(html.Div(view.unit, className="fs-unit fs-unit-only"))
    return html.Div(parts, className=f"fs-cell fs-cell-{view.key}")


def model_header(model: str, info: dict):
    """Column header: name, receptive field, method, model-card button, job status."""
    rf = info.get("receptive_field")
    badges = [dbc.Badge(f"RF {format_rf(rf)}", color="secondary", className="me-1")] if rf else []
    if info.get("method"):
        badges.append(dbc.Badge(info["method"], color="light", text_color="dark", className="me-1",
                                title=info.get("reason") or ""))
    return html.Div([
        html.Div([html.Span(model, className="fs-model-name"),
                  dbc.Button("card", id=pid(ids.CARD_BUTTON, model), size="sm", color="link", className="fs-card-btn",
                             title=f"model card of {model}"),
                  dbc.Button("png", id=pid(ids.FUSED_PNG, model), size="sm", color="link", className="fs-card-btn",
                             title=f"download the fused image of {model} (PNG; in colour when the PET is colour)"),
                  dbc.Button("⤓", id=pid(ids.HDF5, model), size="sm", color="link", className="fs-card-btn",
                             title=f"download the dense result of {model} (HDF5)")], className="fs-head-top"),
        html.Div(badges, className="fs-badges"),
        html.Div(id=pid(ids.STATUS, model), className="fs-status"),
    ], className="fs-head")


def format_rf(rf) -> str:
    """Receptive field as text: an int side, a (rows, cols) pair, or 'global'."""
    if rf is None:
        return "?"
    if isinstance(rf, (int, float)):
        return f"{int(rf)}×{int(rf)}"
    if isinstance(rf, (list, tuple)) and len(rf) == 2:
        return f"{rf[0]}×{rf[1]}"
    return str(rf)


def grid(models: list[str], infos: dict[str, dict], window: str, rf_offsets: dict[str, tuple] | None = None):
    """The whole comparison grid, or a deliberate empty state when no model is selected."""
    if not models:
        return dbc.Alert([html.H5("No model selected", className="alert-heading"),
                          html.P("Tick one or more models under “Models” to compare them side by side.",
                                 className="mb-0")], color="light", className="fs-empty-state", id=ids.NO_MODELS)
    rf_offsets = rf_offsets or {}
    children = [html.Div(className="fs-corner")]
    children += [model_header(m, infos.get(m, {})) for m in models]
    for view in VIEWS:
        children.append(html.Div([html.Div(view.title, className="fs-row-title"),
                                  html.Div(row_note(view, window), className="fs-row-note")],
                                 className="fs-row-label"))
        children += [cell(view, m, window, rf_offsets.get(m)) for m in models]
    return html.Div(children, className="fs-grid",
                    style={"gridTemplateColumns": f"7.5rem repeat({len(models)}, minmax(0, 1fr))"})


def row_note(view: View, window: str) -> str:
    """The note under a row's title: what its images show."""
    if view.kind == "jacobian":
        return "hovered pixel; each model’s own RF window" if window == "rf" else "hovered pixel; full image"
    if view.kind == "dense":
        return "whole image (background job)"
    return "hover, click to pin, arrows to step"
