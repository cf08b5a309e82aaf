"""The page: controls on the left; inputs, comparison grid and statistics on the right.

Initial control values come from ``default`` (a ``state.ViewState``); the URL
then overrides them through the sync callback, so a shared link reproduces a view.
Component ids come from ``ids.py``; ``browser_config`` hands those the browser needs to
``assets/fs_hover.js``.
"""
from __future__ import annotations

import dash_bootstrap_components as dbc
from dash import dcc, html

from . import backend, components, ids, stats
from .features.metrics import metrics_card
from .panels import JACOBIAN_VIEWS
from .state import GAMMA_MAX, GAMMA_MIN, ViewState

STORES = ids.STORES


def browser_config() -> dict:
    """What ``assets/fs_hover.js`` needs of the page: the hover route (relative to the app's prefix),
    the stores it writes, the readout's and the scatter's ids and the pattern types of the Jacobian panels."""
    return {"route": ids.HOVER_ROUTE.lstrip("/"),
            "stores": {"pinned": ids.PINNED, "region": ids.REGION},
            "readout": ids.READOUT, "scatter": ids.SCATTER, "views": list(JACOBIAN_VIEWS),
            "types": {"image": ids.IMAGE["jacobian"], "ticks": ids.TICKS["jacobian"], "mark": ids.MARK}}


def _max_upload_bytes() -> int:
    return int(backend.config().max_upload_mb * 2**20)


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
                 dcc.Dropdown(id=ids.PAIR_SELECT, clearable=False, value=default.pair,
                              options=[{"label": backend.sample_label(s), "value": f"sample:{s}"} for s in samples]),
                 html.Div([_upload(ids.UPLOAD_MRI, "MRI"), _upload(ids.UPLOAD_PET, "PET"),
                           _upload(ids.UPLOAD_H5, "HDF5", accept=".h5,.hdf5")], className="fs-uploads mt-2",
                          **{"data-max-bytes": str(_max_upload_bytes())}),
                 html.Div(id=ids.UPLOAD_MSG, className="fs-upload-msg", role="status"),
                 html.Div(id=ids.PAIR_MSG),
                 dbc.Switch(id=ids.Y_ONLY, label="Y only (the luminance the networks see)", value=default.y_only,
                            className="mt-2 mb-0"),
                 html.Small(id=ids.COLOUR_NOTE, className="text-muted d-block"),
                 help_text="a bundled pair, two co-registered images, or a dense result (HDF5) with its pair"),
        _section("Models",
                 dbc.Checklist(id=ids.MODELS, options=[{"label": m, "value": m} for m in models],
                               value=list(default.models), className="fs-model-list"),
                 help_text="one column each; “card” shows the checkpoint’s model card"),
        _section("Colour",
                 dbc.RadioItems(id=ids.JAC_MODE, inline=True, value=default.jac,
                                options=[{"label": "signed (0 = white)", "value": "signed"},
                                         {"label": "magnitude", "value": "magnitude"}]),
                 dbc.Switch(id=ids.SHARED, label="one colour range shared by all models",
                            value=default.range == "shared"),
                 dbc.RadioItems(id=ids.WINDOW, inline=True, value=default.window,
                                options=[{"label": "Jacobian: RF window", "value": "rf"},
                                         {"label": "full size", "value": "full"}]),
                 html.Small("γ Jacobians", className="text-muted"), _gamma_slider(ids.GAMMA_J, default.gamma_j),
                 html.Small("γ guidance maps", className="text-muted"), _gamma_slider(ids.GAMMA_G, default.gamma_g),
                 help_text="gamma only re-colours; nothing is recomputed"),
        _section("Region for statistics",
                 dbc.RadioItems(id=ids.REGION_MODE, inline=True, value="hover",
                                options=[{"label": "hover", "value": "hover"}, {"label": "draw box", "value": "box"},
                                         {"label": "draw lasso", "value": "lasso"}]),
                 html.Div([html.Small("brain mask: MRI >", className="text-muted me-2"),
                           dcc.Input(id=ids.MASK_THRESHOLD, type="number", min=0, max=1, step=0.01,
                                     value=stats.BRAIN_THRESHOLD, className="fs-num")], className="d-flex mt-1"),
                 dbc.Button("clear region", id=ids.REGION_CLEAR, size="sm", color="secondary", outline=True,
                            className="mt-1"),
                 help_text="drag on any image, or brush the scatter plot"),
        _section("Whole-image maps",
                 dbc.ButtonGroup([
                     dbc.Button("Compute", id=ids.DENSE_RUN, color="primary", size="sm"),
                     dbc.Button("Cancel", id=ids.DENSE_CANCEL, color="secondary", size="sm", disabled=True),
                 ]),
                 html.Div(id=ids.DENSE_MSG, role="status"),
                 components.cohort_controls(),
                 help_text="dense Jacobians run in the background; results are cached for everyone. "
                           "“Compute all samples”: the shown models on every bundled pair"),
        _section("Share and download",
                 html.Div([dcc.Input(id=ids.LINK, readOnly=True, className="fs-link form-control form-control-sm"),
                           dcc.Clipboard(target_id=ids.LINK, title="copy link", className="fs-copy")],
                          className="d-flex align-items-center"),
                 dbc.ButtonGroup([
                     dbc.Button("figures PNG", id=ids.DOWNLOAD_PNG, size="sm", outline=True, color="primary"),
                     dbc.Button("statistics CSV", id=ids.DOWNLOAD_CSV, size="sm", outline=True, color="primary"),
                 ], className="mt-2"),
                 html.Small("each model’s column: “png” its fused image, ⤓ its dense result (HDF5)",
                            className="text-muted d-block"),
                 dcc.Download(id=ids.DOWNLOAD), dcc.Download(id=ids.DOWNLOAD_FUSED)),
    ]), className="fs-controls")


def inputs_card():
    """The two inputs, shown once with the cursor, and the readout of the selected pixel."""
    def source(view, title):
        return html.Div([html.Div(title, className="fs-row-title"),
                         html.Div([html.Img(id=ids.INPUT[view], className="fs-img", alt=title, draggable="false"),
                                   ],
                                  className="fs-frame fs-full")], className="fs-input")

    return dbc.Card(dbc.CardBody(dbc.Row([
        dbc.Col(source("mri", "MRI"), width=3),
        dbc.Col(source("pet", "PET"), width=3),
        dbc.Col([html.Div(id=ids.PIN_BADGE, className="mb-1"),
                 html.Div(id=ids.READOUT, className="fs-readout")], width=6),
    ], className="g-2")), className="mb-2")


def stats_card():
    return dbc.Card(dbc.CardBody([
        html.H6("Influence statistics: how much does each network lean on MRI?", className="card-title"),
        dcc.Graph(id=ids.HISTOGRAM, config={"displaylogo": False}),
        dcc.Graph(id=ids.SCATTER, config={"displaylogo": False, "modeBarButtonsToAdd": ["lasso2d", "select2d"]}),
        html.Div(id=ids.STATS_TABLE),
    ]), className="mb-2")


def page(samples: list[str], models: list[str], default: ViewState):
    """The whole page."""
    return html.Div([
        dcc.Location(id=ids.URL, refresh=False),
        *[dcc.Store(id=s) for s in STORES],
        dcc.Store(id=ids.BROWSER_CONFIG, data=browser_config()),
        dbc.Modal([dbc.ModalHeader(dbc.ModalTitle(id=ids.CARD_TITLE)), dbc.ModalBody(id=ids.CARD_BODY)],
                  id=ids.CARD_MODAL, size="lg", scrollable=True, is_open=False),
        dbc.Navbar(dbc.Container([
            dbc.NavbarBrand("fusion-saliency", className="fw-bold"),
            html.Span("exact per-pixel Jacobians of MRI + PET fusion networks, side by side",
                      className="text-light small"),
        ], fluid=True), color="dark", dark=True, className="mb-2 py-1"),
        dbc.Container(dbc.Row([
            dbc.Col(controls(samples, models, default), width=12, lg=3, xl=2),
            dbc.Col([inputs_card(),
                     dbc.Card(dbc.CardBody(html.Div(id=ids.GRID)), className="mb-2"),
                     stats_card(), metrics_card()], width=12, lg=9, xl=10),
        ], className="g-2"), fluid=True),
    ])
