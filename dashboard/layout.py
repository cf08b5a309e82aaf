"""The page: controls on the left; inputs, comparison grid and statistics on the right.

Initial control values come from ``default`` (a ``state.ViewState``); the URL
then overrides them through the sync callback, so a shared link reproduces a view.
"""
from __future__ import annotations

import dash_bootstrap_components as dbc
from dash import dcc, html

from . import stats
from .metrics_view import metrics_card
from .state import GAMMA_MAX, GAMMA_MIN, ViewState

STORES = ("fs-pair", "fs-pinned", "fs-pixel-rest", "fs-region", "fs-grid-version",
          "fs-dense-request", "fs-dense-result", "fs-dense-progress", "fs-dense-status", "fs-dense-cancelled",
          "fs-dense-job",
          "fs-uploads", "fs-opened", "fs-stats-rows", "fs-js-sink")


def _max_upload_bytes() -> int:
    from .backend import config

    return int(config().max_upload_mb * 2**20)


def _sample_label(name: str) -> str:
    from .backend import sample_label

    return sample_label(name)


def _upload(id_: str, label: str, accept: str | None = None):
    # max_size: the browser drops a larger file without a word; assets/fs_upload_limit.js says why
    return dcc.Upload(id=id_, children=html.Div([html.B(label), html.Br(), html.Small("drop or click")]),
                      className="fs-upload", multiple=False, accept=accept, max_size=_max_upload_bytes())


def _section(title: str, *children, help_text: str | None = None):
    head = [html.Span(title, className="fs-section-title")]
    if help_text:
        head.append(html.Small(help_text, className="text-muted d-block"))
    return html.Div([html.Div(head, className="mb-1"), *children], className="fs-section")


def _gamma_slider(id_: str, value: float):
    return dcc.Slider(id=id_, min=GAMMA_MIN, max=GAMMA_MAX, step=0.05, value=value, updatemode="mouseup",
                      marks={0.1: "0.1", 0.5: "0.5", 1: "1", 1.5: "1.5", 2: "2"},
                      tooltip={"placement": "bottom", "always_visible": False})


def controls(samples: list[str], models: list[str], default: ViewState):
    """The left column: pair, models, colour, region, background job, sharing."""
    return dbc.Card(dbc.CardBody([
        _section("Image pair",
                 dcc.Dropdown(id="fs-pair-select", clearable=False, value=default.pair,
                              options=[{"label": _sample_label(s), "value": f"sample:{s}"} for s in samples]),
                 html.Div([_upload("fs-upload-mri", "MRI"), _upload("fs-upload-pet", "PET"),
                           _upload("fs-upload-h5", "HDF5", accept=".h5,.hdf5")], className="fs-uploads mt-2",
                          **{"data-max-bytes": str(_max_upload_bytes())}),
                 html.Div(id="fs-upload-msg", className="fs-upload-msg", role="status"),
                 html.Div(id="fs-pair-msg"),
                 dbc.Switch(id="fs-y-only", label="Y only (the luminance the networks see)", value=default.y_only,
                            className="mt-2 mb-0"),
                 html.Small(id="fs-colour-note", className="text-muted d-block"),
                 help_text="a bundled pair, two co-registered images, or a dense result (HDF5) with its pair"),
        _section("Models",
                 dbc.Checklist(id="fs-models", options=[{"label": m, "value": m} for m in models],
                               value=list(default.models), className="fs-model-list"),
                 help_text="one column each; “card” shows the checkpoint’s model card"),
        _section("Colour",
                 dbc.RadioItems(id="fs-jac-mode", inline=True, value=default.jac,
                                options=[{"label": "signed (0 = white)", "value": "signed"},
                                         {"label": "magnitude", "value": "magnitude"}]),
                 dbc.Switch(id="fs-shared", label="one colour range shared by all models",
                            value=default.range == "shared"),
                 dbc.RadioItems(id="fs-window", inline=True, value=default.window,
                                options=[{"label": "Jacobian: RF window", "value": "rf"},
                                         {"label": "full size", "value": "full"}]),
                 html.Small("γ Jacobians", className="text-muted"), _gamma_slider("fs-gamma-j", default.gamma_j),
                 html.Small("γ guidance maps", className="text-muted"), _gamma_slider("fs-gamma-g", default.gamma_g),
                 help_text="gamma only re-colours; nothing is recomputed"),
        _section("Region for statistics",
                 dbc.RadioItems(id="fs-region-mode", inline=True, value="hover",
                                options=[{"label": "hover", "value": "hover"}, {"label": "draw box", "value": "box"},
                                         {"label": "draw lasso", "value": "lasso"}]),
                 html.Div([html.Small("brain mask: MRI >", className="text-muted me-2"),
                           dcc.Input(id="fs-mask-threshold", type="number", min=0, max=1, step=0.01,
                                     value=stats.BRAIN_THRESHOLD, className="fs-num")], className="d-flex mt-1"),
                 dbc.Button("clear region", id="fs-region-clear", size="sm", color="secondary", outline=True,
                            className="mt-1"),
                 help_text="drag on any image, or brush the scatter plot"),
        _section("Whole-image maps",
                 dbc.ButtonGroup([
                     dbc.Button("Compute", id="fs-dense-run", color="primary", size="sm"),
                     dbc.Button("Cancel", id="fs-dense-cancel", color="secondary", size="sm", disabled=True),
                 ]),
                 html.Div(id="fs-dense-msg", role="status"),
                 help_text="dense Jacobians run in the background; results are cached for everyone"),
        _section("Share and download",
                 html.Div([dcc.Input(id="fs-link", readOnly=True, className="fs-link form-control form-control-sm"),
                           dcc.Clipboard(target_id="fs-link", title="copy link", className="fs-copy")],
                          className="d-flex align-items-center"),
                 dbc.ButtonGroup([
                     dbc.Button("figures PNG", id="fs-dl-png", size="sm", outline=True, color="primary"),
                     dbc.Button("statistics CSV", id="fs-dl-csv", size="sm", outline=True, color="primary"),
                 ], className="mt-2"),
                 html.Small("each model’s column: “png” its fused image, ⤓ its dense result (HDF5)",
                            className="text-muted d-block"),
                 dcc.Download(id="fs-download"), dcc.Download(id="fs-download-fused")),
    ]), className="fs-controls")


def inputs_card():
    """The two inputs, shown once with the cursor, and the readout of the selected pixel."""
    def source(view, title):
        return html.Div([html.Div(title, className="fs-row-title"),
                         html.Div([html.Img(id=f"fs-input-{view}", className="fs-img", alt=title, draggable="false"),
                                   html.Div(className="fs-ch"), html.Div(className="fs-cv")],
                                  className="fs-frame fs-full")], className="fs-input")

    return dbc.Card(dbc.CardBody(dbc.Row([
        dbc.Col(source("mri", "MRI"), width=3),
        dbc.Col(source("pet", "PET"), width=3),
        dbc.Col([html.Div(id="fs-pin-badge", className="mb-1"),
                 html.Div(id="fs-readout", className="fs-readout")], width=6),
    ], className="g-2")), className="mb-2")


def stats_card():
    return dbc.Card(dbc.CardBody([
        html.H6("Influence statistics: how much does each network lean on MRI?", className="card-title"),
        dcc.Graph(id="fs-hist", config={"displaylogo": False}),
        dcc.Graph(id="fs-scatter", config={"displaylogo": False, "modeBarButtonsToAdd": ["lasso2d", "select2d"]}),
        html.Div(id="fs-stats-table"),
    ]), className="mb-2")


def page(samples: list[str], models: list[str], default: ViewState):
    """The whole page."""
    return html.Div([
        dcc.Location(id="fs-url", refresh=False),
        *[dcc.Store(id=s) for s in STORES],
        dbc.Modal([dbc.ModalHeader(dbc.ModalTitle(id="fs-card-title")), dbc.ModalBody(id="fs-card-body")],
                  id="fs-card-modal", size="lg", scrollable=True, is_open=False),
        dbc.Navbar(dbc.Container([
            dbc.NavbarBrand("fusion-saliency", className="fw-bold"),
            html.Span("exact per-pixel Jacobians of MRI + PET fusion networks, side by side",
                      className="text-light small"),
        ], fluid=True), color="dark", dark=True, className="mb-2 py-1"),
        dbc.Container(dbc.Row([
            dbc.Col(controls(samples, models, default), width=12, lg=3, xl=2),
            dbc.Col([inputs_card(),
                     dbc.Card(dbc.CardBody(html.Div(id="fs-grid")), className="mb-2"),
                     stats_card(), metrics_card()], width=12, lg=9, xl=10),
        ], className="g-2"), fluid=True),
    ])
