"""Every callback of the dashboard; ``register(app)`` attaches them all with ``app.callback``.

Data flow (one way): URL <-> controls -> pair/models -> grid -> images.
Hover runs in the browser (``assets/fs_hover.js``): it draws the crosshair on
every image at once and asks ``/fs-api/pixel`` (``api.py``) for the Jacobian
images (small PNGs), tick labels and readout values, which it swaps in itself.
Per-model panels are served by one callback each, over pattern-matching ``ALL`` ids.
The input and fused images (colour or Y only) are shown by ``colour_view``.
"""
from __future__ import annotations

import base64
import time

import dash_bootstrap_components as dbc
import numpy as np
from dash import ALL, ClientsideFunction, Input, Output, State, ctx, dcc, html, no_update
from dash.exceptions import PreventUpdate

import fusion

from . import api, backend, colour, dense_job, figures, job_slots, jobs, metrics_view, stats
from .panels import JACOBIAN_VIEWS, VIEW_BY_KEY, grid, pid
from .state import ViewState, clamp_gamma, decode, encode

_CALLBACKS: list[tuple[tuple, dict, object]] = []
_CLIENTSIDE: list[tuple[tuple, dict]] = []


def cb(*args, **kwargs):
    """Record a server callback; ``register(app)`` attaches every recorded one with ``app.callback``.

    (Recording instead of ``@dash.callback`` lets tests build several apps in one process.)
    """
    def record(func):
        _CALLBACKS.append((args, kwargs, func))
        return func
    return record


def clientside(*args, **kwargs):
    """Record a clientside callback (functions live in ``assets/fs_hover.js``)."""
    _CLIENTSIDE.append((args, kwargs))


def register(app) -> None:
    """Attach every callback of this module (and the hover endpoint) to ``app``."""
    api.register(app)
    from . import colour_view  # noqa: F401 - records its callbacks with ``cb`` (it imports this module)
    metrics_view.register(app)

    for args, kwargs, func in _CALLBACKS:
        app.callback(*args, **kwargs)(func)
    for args, kwargs in _CLIENTSIDE:
        app.clientside_callback(*args, **kwargs)


JAC_UNITS = {"jmri": "dF(p)/dMRI", "jpet": "dF(p)/dPET"}
DENSE_MAPS = {"gmri": "guidance_a", "gpet": "guidance_b", "share": "mri_share"}


# ------------------------------------------------------------------ helpers
def default_view() -> ViewState:
    cfg = backend.config()
    known = fusion.list_models()
    return ViewState(pair=backend.default_pair_key(cfg), models=tuple(m for m in cfg.default_models if m in known))


def output_ids(index: int) -> list[dict]:
    """The component ids behind the ``index``-th (ALL) output of the running callback."""
    outputs = ctx.outputs_list
    if not outputs or isinstance(outputs[0], dict):  # a callback with one (ALL) output: a flat list
        return [item["id"] for item in outputs]
    return [item["id"] for item in outputs[index]]


def ticks_children(spec: colour.ColourSpec):
    return [html.Span(text, style={"left": f"{100 * pos:.1f}%"}) for pos, text in colour.ticks(spec)]


def jac_spec(mode: str, gamma: float, unit: str = "") -> colour.ColourSpec:
    return api.jac_spec(mode, gamma)


def clamp_pixel(pixel: dict | None, pair: dict) -> tuple[int, int]:
    """The selected pixel inside the image; the centre when nothing was hovered yet."""
    h, w = pair["h"], pair["w"]
    if not pixel or pixel.get("row") is None:
        return h // 2, w // 2
    return min(max(int(pixel["row"]), 0), h - 1), min(max(int(pixel["col"]), 0), w - 1)


def grey_uri(image: np.ndarray) -> str:
    return colour.map_uri(image, colour.ColourSpec(colour.GREY, "linear", 0.0, 1.0))


# ------------------------------------------------------------------ URL <-> controls
CONTROLS = (("fs-pair-select", "value"), ("fs-models", "value"), ("fs-pinned", "data"), ("fs-jac-mode", "value"),
            ("fs-shared", "value"), ("fs-window", "value"), ("fs-gamma-j", "value"), ("fs-gamma-g", "value"),
            ("fs-y-only", "value"))


@cb(
    Output("fs-url", "search"), *[Output(i, p) for i, p in CONTROLS], Output("fs-link", "value"),
    Output("fs-pair-select", "options", allow_duplicate=True),
    Input("fs-url", "search"), *[Input(i, p) for i, p in CONTROLS], State("fs-url", "href"),
    State("fs-uploads", "data"),
    prevent_initial_call="initial_duplicate",
)
def sync_url(search, pair, models, pinned, jac, shared, window, gamma_j, gamma_g, y_only, href, uploads):
    """On load, the URL sets the controls; afterwards, the controls write the URL (one callback, no loop).

    A linked uploaded pair gets its dropdown option in the same response: a Dropdown
    drops a value that is missing from its options.
    """
    base = (href or "").split("?", 1)[0]
    if ctx.triggered_id in (None, "fs-url"):
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


# ------------------------------------------------------------------ the pair
def pair_options(uploads: list | None, current: str | None) -> list[dict]:
    from fusion import data

    options = [{"label": backend.sample_label(s), "value": f"{backend.SAMPLE_PREFIX}{s}"} for s in data.list_samples()]
    for item in uploads or []:
        options.append({"label": item["label"], "value": item["id"]})
    if current and all(o["value"] != current for o in options):
        options.append({"label": f"shared pair {current[:8]}", "value": current})
    return options


@cb(
    Output("fs-pair", "data"), Output("fs-pair-msg", "children"), Output("fs-pair-select", "options"),
    Input("fs-pair-select", "value"), State("fs-uploads", "data"),
)
def choose_pair(key, uploads):
    """Resolve the chosen pair through the service; a stale link falls back to the default sample."""
    message = None
    try:
        pair = backend.resolve_pair(key or backend.default_pair_key())
    except (fusion.InvalidInput, KeyError) as exc:
        pair = backend.resolve_pair(backend.default_pair_key())
        message = dbc.Alert(f"Could not open pair {key!r}: {exc}. Showing {pair['label']} instead; "
                            "upload the images again to share them.", color="warning", className="mt-2 small")
    return pair, message, pair_options(uploads, key)


#: Longest file name accepted from an upload (names are only shown, never used as paths).
UPLOAD_NAME_CHARS = 255


def _decode_upload(contents, filename, label: str) -> tuple[bytes, str]:
    """The bytes and the file name of one ``dcc.Upload`` payload (a base64 data URI).

    Raises fusion.InvalidInput, with a message for the page, for anything else: another type,
    not a base64 data URI, over the upload size, or a file name that is not a short plain name.
    """
    if filename is None:
        filename = label
    if not isinstance(filename, str) or not filename.strip():
        raise fusion.InvalidInput("the file name is missing or not a text")
    if len(filename) > UPLOAD_NAME_CHARS:
        raise fusion.InvalidInput(f"the file name is longer than {UPLOAD_NAME_CHARS} characters")
    if any(not c.isprintable() for c in filename) or any(c in filename for c in "/\\") or filename in (".", ".."):
        raise fusion.InvalidInput(f"the file name {filename[:60]!r} has control characters or looks like a path")
    if not isinstance(contents, str):
        raise fusion.InvalidInput(f"{filename}: not a file upload (got {type(contents).__name__})")
    head, comma, payload = contents.partition(",")
    if not comma or not head.startswith("data:") or not head.endswith(";base64") or len(head) > 200:
        raise fusion.InvalidInput(f"{filename}: not a file upload (expected a base64 data URI)")
    limit = int(backend.config().max_upload_mb * 2**20)
    if len(payload) // 4 * 3 > limit:
        raise fusion.InvalidInput(f"{filename}: the file is over the {limit / 2**20:g} MB allowed")
    try:
        return base64.b64decode(payload, validate=True), filename
    except ValueError:  # binascii.Error
        raise fusion.InvalidInput(f"{filename}: the upload is damaged (not valid base64)") from None


@cb(
    Output("fs-upload-msg", "children"), Output("fs-pair-select", "value", allow_duplicate=True),
    Output("fs-pair-select", "options", allow_duplicate=True), Output("fs-uploads", "data"),
    Input("fs-upload-mri", "contents"), Input("fs-upload-pet", "contents"),
    State("fs-upload-mri", "filename"), State("fs-upload-pet", "filename"), State("fs-uploads", "data"),
    prevent_initial_call=True,
)
def upload_pair(mri, pet, mri_name, pet_name, uploads):
    """Validate each dropped file at once; when both are good, store the pair and select it.

    The new option goes out with the new value: a Dropdown drops a value missing from its options.
    """
    problems, files = [], {}
    for label, contents, name in (("MRI", mri, mri_name), ("PET", pet, pet_name)):
        if contents is not None:
            try:
                files[label] = _decode_upload(contents, name, label)
                backend.load_upload(*files[label])  # the server's size and pixel limits, from the header
            except fusion.InvalidInput as exc:
                problems.append(f"{label}: {exc}")
    if problems:
        return dbc.Alert([html.B("Upload refused. "), *[html.Div(p) for p in problems]], color="danger",
                         className="mt-2 small mb-0", id="fs-upload-error"), no_update, no_update, no_update
    if len(files) < 2:
        missing = "PET" if "MRI" in files else "MRI"
        return dbc.Alert(f"Got the {'MRI' if 'MRI' in files else 'PET'} image; now add the {missing} image.",
                         color="info", className="mt-2 small mb-0"), no_update, no_update, no_update
    (mri, mri_name), (pet, pet_name) = files["MRI"], files["PET"]
    try:
        pair_id = backend.put_uploaded_pair(mri, mri_name, pet, pet_name)
    except fusion.InvalidInput as exc:
        return dbc.Alert([html.B("Upload refused. "), str(exc)], color="danger", className="mt-2 small mb-0",
                         id="fs-upload-error"), no_update, no_update, no_update
    label = f"upload {mri_name} + {pet_name}"
    uploads = [u for u in (uploads or []) if u["id"] != pair_id] + [{"id": pair_id, "label": label}]
    return (dbc.Alert(f"Using {label}.", color="success", className="mt-2 small mb-0", id="fs-upload-ok"),
            pair_id, pair_options(uploads, pair_id), uploads)


@cb(
    Output("fs-upload-msg", "children", allow_duplicate=True),
    Output("fs-pair-select", "value", allow_duplicate=True),
    Output("fs-pair-select", "options", allow_duplicate=True), Output("fs-uploads", "data", allow_duplicate=True),
    Output("fs-models", "value", allow_duplicate=True), Output("fs-opened", "data"),
    Input("fs-upload-h5", "contents"),
    State("fs-upload-h5", "filename"), State("fs-uploads", "data"), State("fs-models", "value"),
    prevent_initial_call=True,
)
def open_result(contents, filename, uploads, models):
    """Open a dense result (HDF5): its pair becomes the current pair and its model's maps show at
    once, or, computed with other weights, the pair opens and a message says why the maps do not."""
    try:
        data, name = _decode_upload(contents, filename, "HDF5 file")
        opened = backend.open_hdf5(data, name)
    except (fusion.InvalidInput, ValueError) as exc:
        return (dbc.Alert([html.B("File refused. "), str(exc)], color="danger", className="mt-2 small mb-0",
                          id="fs-upload-error"), *[no_update] * 5)
    pair_id, model = opened["pair_id"], opened["model"]
    label = f"file {name}"
    uploads = [u for u in (uploads or []) if u["id"] != pair_id] + [{"id": pair_id, "label": label}]
    models = list(models or [])
    if opened["installed"]:
        models += [model] if model not in models else []
        message = dbc.Alert(f"Opened {name}: its pair and the whole-image maps of {model}.", color="success",
                            className="mt-2 small mb-0", id="fs-upload-ok")
    else:
        message = dbc.Alert([html.B(f"Opened the pair of {name}, not its maps: "), f"{opened['problem']}. ",
                             "“Compute” makes them with the loaded model."], color="warning",
                            className="mt-2 small mb-0", id="fs-upload-warning")
    return message, pair_id, pair_options(uploads, pair_id), uploads, models, {"pair": pair_id, "t": time.time()}


# ------------------------------------------------------------------ the grid and its panels
@cb(
    Output("fs-grid", "children"), Output("fs-grid-version", "data"),
    Input("fs-models", "value"), Input("fs-window", "value"), Input("fs-pair", "data"),
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


@cb(
    Output({"type": "cbar-jacobian", "view": ALL, "model": ALL}, "src"),
    Input("fs-grid-version", "data"), Input("fs-jac-mode", "value"), Input("fs-gamma-j", "value"),
)
def jacobian_colourbars(version, mode, gamma):
    """The Jacobian bars depend on mode and gamma only (their tick labels follow the hover)."""
    spec = jac_spec(mode, gamma, "")
    return [colour.colourbar_uri(spec)] * len(output_ids(0))


@cb(
    Output("fs-pin-badge", "children"),
    Input("fs-pinned", "data"),
)
def pin_badge(pinned):
    if not pinned:
        return html.Small("Hover any image to select a pixel; click to pin it; arrow keys step it.",
                          className="text-muted")
    return dbc.Badge(f"pinned at (row {pinned['row']}, col {pinned['col']}) · click or Esc to release",
                     color="warning", text_color="dark", id="fs-pinned-badge")


# ------------------------------------------------------------------ model cards
@cb(
    Output("fs-card-modal", "is_open"), Output("fs-card-title", "children"), Output("fs-card-body", "children"),
    Input({"type": "card-btn", "model": ALL}, "n_clicks"),
    prevent_initial_call=True,
)
def show_card(clicks):
    if not ctx.triggered_id or not any(clicks):
        raise PreventUpdate
    name = ctx.triggered_id["model"]
    info = backend.model_info(name)
    return True, f"Model card: {name}", card_body(info)


def card_body(info: dict):
    """Key facts of a model: receptive field, Jacobian path, checkpoint and the card's entries."""
    facts = {"receptive field": info.get("receptive_field"), "Jacobian path": info.get("method"),
             "why this path": info.get("reason"), "checkpoint": info.get("checkpoint") or "none (no trained weights)",
             "weights hash": (info.get("weights_hash") or "")[:16] or None}
    rows = [html.Tr([html.Th(k), html.Td(str(v))]) for k, v in facts.items() if v not in (None, "")]
    card = info.get("card")
    if not card:
        rows.append(html.Tr([html.Th("model card"), html.Td("this checkpoint has no model card")]))
    else:
        for key, value in card.items():
            text = value if isinstance(value, str) else repr(value)
            if len(text) > 300:
                text = text[:300] + " …"
            rows.append(html.Tr([html.Th(key), html.Td(text, className="fs-card-value")]))
    return dbc.Table(html.Tbody(rows), size="sm", striped=True)


# ------------------------------------------------------------------ whole-image (dense) maps
def dense_srcs(maps: dict, fused: np.ndarray, mode: str, shared_ranges: dict | None, gamma: float) -> dict:
    """PNG sources of the dense views of one model from its maps (NaN where still unknown)."""
    out = {}
    for view, name in DENSE_MAPS.items():
        values = maps[name]
        if view == "share":
            spec = colour.ColourSpec(colour.SHARE, "linear", 0.0, 1.0)
        else:
            lo_hi = (shared_ranges or {}).get(view) or colour.limits({view: values}, mode, False)[view]
            spec = colour.with_range(jac_spec(mode, gamma, ""), lo_hi)
        out[view] = (colour.map_uri(values, spec), spec)
    out["rgb"] = (colour.data_uri(colour.rgb_composite(maps["guidance_a"], maps["guidance_b"], fused,
                                                       clamp_gamma(gamma))), None)
    return out


@cb(
    Output("fs-dense-request", "data"), Output("fs-dense-job", "data"),
    Output("fs-dense-progress", "data", allow_duplicate=True),
    Input("fs-dense-run", "n_clicks"), Input({"type": "retry", "model": ALL}, "n_clicks"),
    Input("fs-grid-version", "data"), Input({"type": "job-retry", "index": ALL}, "n_clicks"),
    State("fs-dense-request", "data"),
    prevent_initial_call=True,
)
def request_dense(run, retries, version, job_retries, previous):
    """Compute (all selected models), retry (one model) or retry a lost job: hand the list to the
    background job (and forget the previous job's place in line or loss, and its progress: the new
    job may wait in line, and its columns must not show the old job's progress meanwhile).

    The grid version is an Input only so that Dash holds a click back until the grid is
    up to date: Dash does not wait for a State whose callback is still running, so a click
    right after an upload read the previous pair's version and computed the previous pair
    (the "lost click"). A new version alone requests nothing.
    """
    clicked = [i for p, i in ctx.triggered_prop_ids.items() if p.endswith(".n_clicks")]
    if not clicked or not version or not version["models"]:
        raise PreventUpdate
    if "fs-dense-run" in clicked:
        models = version["models"]
    elif any(job_retries) and clicked[0].get("type") == "job-retry":  # the lost job's models, if still shown
        same = previous and previous["pair"] == version["pair"]
        models = [m for m in version["models"] if m in previous["models"]] if same else version["models"]
    elif any(retries):
        models = [clicked[0]["model"]]
    else:  # retry buttons drawn afresh (no clicks yet)
        raise PreventUpdate
    return {"models": models or version["models"], "pair": version["pair"], "t": time.time()}, None, None


@cb(
    Output("fs-dense-result", "data"),
    Input("fs-dense-request", "data"),
    State("fs-jac-mode", "value"), State("fs-gamma-g", "value"),
    background=True,
    progress=Output("fs-dense-progress", "data"),
    cancel=[Input("fs-dense-cancel", "n_clicks")],
    running=[(Output("fs-dense-run", "disabled"), True, False),
             (Output("fs-dense-cancel", "disabled"), False, True)],
    interval=400,
    prevent_initial_call=True,
)
def run_dense(set_progress, request, mode, gamma):
    """Dense Jacobians of the requested models in a background job, fanned out over the cores (or the Celery
    workers) in blocks of rows (``dense_job``).

    Progress per model (and a coarse preview that refines) goes out every ~0.4 s; the results
    themselves go to the service's shared cache, so every page and worker sees them.
    The returned failures are only read as State (see ``dense_status``).
    """
    if not request:
        raise PreventUpdate
    backend.set_threads(backend.config().job_threads)
    svc = backend.service()
    pair_id = request["pair"]
    report = {"pair": pair_id, "t": request["t"], "models": {m: {"state": "queued"} for m in request["models"]},
              "preview": None}
    fused, last = {}, [0.0]

    def progress(states: dict, preview) -> None:
        report["models"] = {m: {k: v for k, v in s.items() if k in ("state", "done", "total", "error")}
                            for m, s in states.items()}
        now = time.monotonic()
        if now - last[0] < 0.4:
            return
        last[0] = now
        if preview is not None:
            model, maps = preview
            if model not in fused:
                fused[model] = svc.fuse(model, pair_id)
            srcs = dense_srcs(maps, fused[model], mode, None, gamma)
            report["preview"] = {"model": model, "srcs": {v: s for v, (s, _) in srcs.items()}}
        set_progress(dict(report))

    try:
        states = dense_job.compute(request["models"], pair_id, jobs.job_key(), progress)
    except Exception as exc:  # noqa: BLE001 - the page says what went wrong; finished models stay cached
        states = {m: {"state": "done"} if svc.has_dense(m, pair_id) else
                  {"state": "failed", "error": f"{type(exc).__name__}: {exc}"} for m in request["models"]}
    report["models"], report["preview"] = states, None
    set_progress(dict(report))
    return {"pair": pair_id, "t": request["t"],
            "models": {m: s for m, s in states.items() if s["state"] == "failed"}}


@cb(
    Output("fs-dense-status", "data"),
    Input("fs-grid-version", "data"), Input("fs-dense-progress", "data"), Input("fs-dense-cancel", "disabled"),
    Input("fs-opened", "data"), Input("fs-dense-cancelled", "data"), Input("fs-dense-job", "data"),
    State("fs-dense-status", "data"), State("fs-dense-result", "data"), State("fs-dense-request", "data"),
)
def dense_status(version, progress, _idle, _opened, cancelled, job, previous, result, request):
    """Per model: "done" (in the shared cache, computed or opened from a file), "failed" (with the error),
    "cancelled" (with how far it got, until the next job reports), "lost" (its job's worker stopped)
    or "missing".

    Driven by the job's progress (and by the job ending), never by the job's result:
    Dash holds back every callback downstream of a running background callback's
    output, which would freeze the page until the job ends. Only sends changes.
    """
    if not version:
        raise PreventUpdate
    failed = {}
    for report in (result, progress):
        if report and report.get("pair") == version["pair"]:
            failed.update({m: s for m, s in report.get("models", {}).items() if s.get("state") == "failed"})
    stopped = {}
    if cancelled and cancelled["pair"] == version["pair"] and (progress or {}).get("t") == cancelled["t"]:
        stopped = cancelled["models"]
    lost = {}
    if (job or {}).get("state") == "lost" and request and request["pair"] == version["pair"]:
        lost = {m: {"state": "lost", "error": job.get("why", "")} for m in request["models"]}
    status = {}
    for m in version["models"]:
        if backend.dense_maps(m, version["pair"]) is not None:
            status[m] = {"state": "done"}
        elif m in failed:
            status[m] = failed[m]
        elif m in lost:
            status[m] = lost[m]
        elif m in stopped:
            status[m] = {"state": "cancelled", "done": stopped[m].get("done", 0), "total": stopped[m].get("total", 1)}
        else:
            status[m] = {"state": "missing"}
    new = {"pair": version["pair"], "models": status}
    if new == previous:
        raise PreventUpdate
    return new


@cb(
    Output("fs-dense-cancelled", "data"),
    Input("fs-dense-cancel", "n_clicks"), State("fs-dense-progress", "data"),
    prevent_initial_call=True,
)
def remember_cancel(_clicks, progress):
    """Cancel (Dash stops the job's process): remember that job and how far its unfinished models got."""
    if not progress:
        raise PreventUpdate
    models = {m: s for m, s in progress["models"].items() if s["state"] in ("computing", "queued")}
    return {"pair": progress["pair"], "t": progress["t"], "models": models}


@cb(
    Output("fs-dense-msg", "children"),
    Input("fs-dense-job", "data"), Input("fs-dense-cancel", "disabled"),
)
def job_message(line, idle):
    """Under Compute: the job's place in line while it waits; a lost job, with a Retry that starts it again."""
    state = (line or {}).get("state")
    if state == "waiting" and not idle:
        return dbc.Alert(job_slots.waiting_text(line, long=True), color="info", className="mt-2 mb-0 py-1 small",
                         id="fs-job-waiting")
    if state == "lost" and idle:
        return dbc.Alert([html.B("The job was lost "), f"({line.get('why') or 'its worker stopped'}). ",
                          dbc.Button("Retry", id={"type": "job-retry", "index": 0}, size="sm", color="danger",
                                     className="py-0 ms-1")],
                         color="danger", className="mt-2 mb-0 py-1 small", id="fs-job-lost")
    return None


def _live(progress: dict | None, pair_id: str, running: bool) -> dict:
    """Per-model progress of the running job for this pair (nothing when no job runs)."""
    if not running or not progress or progress.get("pair") != pair_id:
        return {}
    return progress.get("models", {})


@cb(
    Output({"type": "status", "model": ALL}, "children"),
    Input("fs-dense-status", "data"), Input("fs-dense-progress", "data"), Input("fs-dense-cancel", "disabled"),
    Input("fs-dense-job", "data"),
)
def model_status(status, progress, idle, line):
    """Header of each column: done / waiting in line / computing n% / failed or lost (message and retry) /
    not computed."""
    models = [i["model"] for i in output_ids(0)]
    if not status:
        return [""] * len(models)
    waiting = not idle and (line or {}).get("state") == "waiting"
    live = {} if waiting else _live(progress, status["pair"], running=not idle)
    out = []
    for m in models:
        s = status["models"].get(m, {"state": "missing"})
        job = live.get(m, {})
        if s["state"] == "done":
            out.append(dbc.Badge("whole-image maps ready", color="success", className="fs-done"))
        elif waiting:
            out.append(dbc.Badge(job_slots.waiting_text(line), color="info", className="fs-waiting"))
        elif job.get("state") == "computing":
            pct = 100.0 * job.get("done", 0) / max(job.get("total", 1), 1)
            out.append(dbc.Progress(value=pct, label=f"{pct:.0f}%", striped=True, animated=True,
                                    className="fs-progress", id=pid("progress", m)))
        elif job.get("state") == "queued":
            out.append(dbc.Badge("queued", color="info"))
        elif s["state"] in ("failed", "lost"):
            out.append(html.Div([html.Span(f"job {s['state']}: ", className="fw-bold"),
                                 html.Span(s.get("error", ""), className="fs-error-text"),
                                 dbc.Button("retry", id=pid("retry", m), size="sm", color="danger",
                                            outline=True, className="ms-1 py-0")], className="text-danger small"))
        elif s["state"] == "cancelled":
            pct = 100.0 * s.get("done", 0) / max(s.get("total", 1), 1)
            out.append(html.Div([dbc.Badge(f"cancelled at {pct:.0f}%", color="warning", text_color="dark",
                                           className="fs-cancelled"),
                                 html.Small(" “Compute” starts again", className="text-muted")]))
        else:
            out.append(html.Small("whole-image maps not computed", className="text-muted"))
    return out


@cb(
    Output({"type": "img-dense", "view": ALL, "model": ALL}, "src"),
    Output({"type": "empty", "view": ALL, "model": ALL}, "children"),
    Output({"type": "cbar-dense", "view": ALL, "model": ALL}, "src"),
    Output({"type": "ticks-dense", "view": ALL, "model": ALL}, "children"),
    Input("fs-dense-status", "data"),
    Input("fs-jac-mode", "value"), Input("fs-shared", "value"), Input("fs-gamma-g", "value"),
)
def show_dense(status, mode, shared, gamma):
    """Guidance maps, RGB composite and MRI share from the shared cache, or a deliberate empty state."""
    ids = output_ids(0)
    if not status:
        raise PreventUpdate
    pair_id = status["pair"]
    maps = {}
    for m in dict.fromkeys(i["model"] for i in ids):
        d = backend.dense_maps(m, pair_id) if status["models"].get(m, {}).get("state") == "done" else None
        if d is not None:
            maps[m] = (d, backend.fused(m, pair_id))
    shared_ranges = None
    if shared and maps:
        shared_ranges = {view: colour.limits({m: mp[name] for m, (mp, _) in maps.items()}, mode, True)
                         .popitem()[1] for view, name in DENSE_MAPS.items() if view != "share"}
    rendered = {m: dense_srcs(mp, fused, mode, shared_ranges, gamma) for m, (mp, fused) in maps.items()}
    srcs, empties = [], []
    for i in ids:
        m, view = i["model"], i["view"]
        srcs.append(rendered[m][view][0] if m in rendered else "")
        empties.append("" if m in rendered else _empty_text(status["models"].get(m, {}), {}))
    bars, ticks = [], []
    for i in output_ids(2):
        spec = rendered.get(i["model"], {}).get(i["view"], (None, None))[1]
        bars.append(colour.colourbar_uri(spec) if spec else "")
        ticks.append(ticks_children(spec) if spec else "")
    return srcs, empties, bars, ticks


@cb(
    Output({"type": "img-dense", "view": ALL, "model": ALL}, "src", allow_duplicate=True),
    Output({"type": "empty", "view": ALL, "model": ALL}, "children", allow_duplicate=True),
    Input("fs-dense-progress", "data"),
    State("fs-dense-status", "data"), State("fs-dense-cancel", "disabled"),
    prevent_initial_call=True,
)
def show_progress(progress, status, idle):
    """While a job runs: its coarse preview (refining) in the computing model's panels, others untouched."""
    ids = output_ids(0)
    if not status:
        raise PreventUpdate
    live = _live(progress, status["pair"], running=not idle)
    if not live:
        raise PreventUpdate
    preview = (progress or {}).get("preview") or {}
    srcs, empties = [], []
    for i in ids:
        m, view = i["model"], i["view"]
        if status["models"].get(m, {}).get("state") == "done":
            srcs.append(no_update), empties.append(no_update)
        elif preview.get("model") == m:
            srcs.append(preview["srcs"].get(view, ""))
            empties.append(html.Span("preview, refining…", className="fs-empty-note"))
        else:
            srcs.append(no_update)
            empties.append(_empty_text(status["models"].get(m, {}), live.get(m, {})))
    return srcs, empties


def _empty_text(status: dict, job: dict) -> str:
    if job.get("state") == "computing":
        return "computing…"
    if job.get("state") == "queued":
        return "queued"
    if status.get("state") == "failed":
        return "job failed (see the column header)"
    if status.get("state") == "lost":
        return "the job was lost (its worker stopped): “Retry” on the left"
    if status.get("state") == "cancelled":
        return "cancelled: “Compute” on the left starts again"
    return "not computed yet: “Compute” on the left"


# ------------------------------------------------------------------ statistics
def _dense_for(status: dict | None) -> dict[str, dict]:
    """{model: whole-image maps} of the models whose dense result is ready."""
    if not status:
        return {}
    out = {}
    for m, s in status["models"].items():
        if s.get("state") == "done":
            d = backend.dense_maps(m, status["pair"])
            if d is not None:
                out[m] = d
    return out


@cb(
    Output("fs-hist", "figure"), Output("fs-stats-table", "children"), Output("fs-stats-rows", "data"),
    Input("fs-dense-status", "data"), Input("fs-region", "data"), Input("fs-mask-threshold", "value"),
    State("fs-pair", "data"),
)
def statistics(status, region, threshold, pair):
    """MRI-share histograms on one axis range, and the per-region table, for the active region."""
    dense = _dense_for(status)
    if not dense or status["pair"] != pair["id"]:
        return figures.share_histograms({}, {}, ""), None, []
    a, _ = backend.pair_arrays(pair["id"])
    brain = stats.brain_mask(a, float(threshold if threshold is not None else stats.BRAIN_THRESHOLD))
    drawn = stats.region_mask(region, a.shape)
    active = drawn if drawn is not None else brain
    label = figures.region_label(region if drawn is not None else None)
    shares = {m: d["mri_share"] for m, d in dense.items()}
    hists = {m: stats.histogram(s, active) for m, s in shares.items()}
    summaries = {m: stats.summarise(s, active) for m, s in shares.items()}
    regions = {"whole image": None, "brain mask": brain}
    if drawn is not None:
        regions[label] = drawn
    rows = stats.region_table(shares, regions)
    table = dbc.Table([
        html.Thead(html.Tr([html.Th(t) for t in ("model", "region", "pixels", "mean MRI share", "MRI-dominated")])),
        html.Tbody([html.Tr([html.Td(r["model"]), html.Td(r["region"]), html.Td(f"{r['pixels']:,}"),
                             html.Td(colour.format_value(r["mean_share"])),
                             html.Td("n/a" if not np.isfinite(r["mri_dominated"]) else f"{r['mri_dominated']:.1%}")])
                    for r in rows]),
    ], size="sm", striped=True, className="fs-stats-table", id="fs-region-table")
    return figures.share_histograms(hists, summaries, label), table, rows


@cb(
    Output("fs-scatter", "figure"),
    Input("fs-dense-status", "data"),
    State("fs-pair", "data"), State("fs-mask-threshold", "value"), State("fs-pinned", "data"),
    State("fs-pixel-rest", "data"),
)
def scatter(status, pair, threshold, pinned, rest):
    """G_MRI vs G_PET over the brain-mask pixels (subsampled for WebGL), one subplot per model."""
    dense = _dense_for(status)
    if not dense or status["pair"] != pair["id"]:
        return figures.guidance_scatter({})
    a, _ = backend.pair_arrays(pair["id"])
    brain = np.flatnonzero(stats.brain_mask(a, float(threshold or stats.BRAIN_THRESHOLD)))
    idx = figures.subsample(brain, backend.config().max_scatter_points)
    points = {m: (d["guidance_a"].ravel()[idx], d["guidance_b"].ravel()[idx], idx) for m, d in dense.items()}
    return figures.guidance_scatter(points, _highlight(dense, pinned or rest, pair))


def _highlight(dense: dict, pixel: dict | None, pair: dict) -> dict:
    """(G_MRI, G_PET) of the selected pixel for every model."""
    row, col = clamp_pixel(pixel, pair)
    return {m: (float(d["guidance_a"][row, col]), float(d["guidance_b"][row, col])) for m, d in dense.items()}


@cb(
    Output("fs-scatter", "figure", allow_duplicate=True),
    Input("fs-pixel-rest", "data"), Input("fs-pinned", "data"),
    State("fs-dense-status", "data"), State("fs-pair", "data"),
    prevent_initial_call=True,
)
def scatter_highlight(rest, pinned, status, pair):
    """Move the highlighted pixel in the scatter when the cursor rests (a Patch: the clouds stay)."""
    dense = _dense_for(status)
    if not dense:
        raise PreventUpdate
    return figures.highlight_patch(list(dense), _highlight(dense, pinned or rest, pair))


@cb(
    Output("fs-region", "data"),
    Input("fs-scatter", "selectedData"), Input("fs-region-clear", "n_clicks"),
    prevent_initial_call=True,
)
def brushed_region(selected, _clear):
    """Brushing the scatter selects those pixels as the region; "clear region" drops it."""
    if ctx.triggered_id == "fs-region-clear" or not selected:
        return None
    indices = sorted({int(p["customdata"]) for p in selected.get("points", []) if "customdata" in p})
    return {"kind": "pixels", "indices": indices} if indices else None


# ------------------------------------------------------------------ downloads
@cb(
    Output("fs-download", "data"),
    Input("fs-dl-png", "n_clicks"), Input("fs-dl-csv", "n_clicks"), Input({"type": "h5", "model": ALL}, "n_clicks"),
    State("fs-pair", "data"), State("fs-grid-version", "data"), State("fs-pixel-rest", "data"),
    State("fs-pinned", "data"), State("fs-jac-mode", "value"), State("fs-shared", "value"),
    State("fs-gamma-j", "value"), State("fs-gamma-g", "value"), State("fs-stats-rows", "data"),
    State("fs-y-only", "value"), State("fs-mask-threshold", "value"),
    prevent_initial_call=True,
)
def download(_png, _csv, h5_clicks, pair, version, rest, pinned, mode, shared, gamma_j, gamma_g, rows, y_only,
             threshold):
    """The current figures as one PNG sheet, the statistics and quality metrics as CSV, or one model's dense
    result as HDF5."""
    trigger = ctx.triggered_id
    if trigger == "fs-dl-csv":
        models = (version or {}).get("models", [])
        if not rows and not models:
            raise PreventUpdate
        quality = metrics_view.metrics_rows(pair["id"], models, threshold)
        return dict(content=metrics_view.statistics_csv(rows or [], quality), filename="mri-share-statistics.csv",
                    type="text/csv")
    if isinstance(trigger, dict):
        if not any(h5_clicks):
            raise PreventUpdate
        result = backend.cached_dense(trigger["model"], pair["id"])
        if result is None:
            raise PreventUpdate
        import tempfile
        from pathlib import Path

        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / f"{trigger['model']}-{pair['id'][:8]}.h5"
            result.to_hdf5(path)
            return dcc.send_bytes(path.read_bytes(), path.name)
    if trigger == "fs-dl-png":
        return dcc.send_bytes(figure_sheet(pair, version, pinned or rest, mode, shared, gamma_j, gamma_g,
                                           bool(y_only)), "fusion-saliency.png")
    raise PreventUpdate


def figure_sheet(pair, version, pixel, mode, shared, gamma_j, gamma_g, y_only=False) -> bytes:
    """Re-colour the current view on the server into one labelled PNG sheet (fused images in colour
    for a colour PET unless ``y_only``)."""
    models = (version or {}).get("models", [])
    row, col = clamp_pixel(pixel, pair)
    results = backend.pixels(models, pair["id"], row, col) if models else {}
    jac = {}
    for m, r in results.items():
        top, bottom, left, right = r.window
        jac[(m, "jmri")], jac[(m, "jpet")] = r.ja[top:bottom, left:right], r.jb[top:bottom, left:right]
    ranges = colour.limits(jac, mode, bool(shared))
    fused = {m: backend.fused_image(m, pair["id"], y_only) for m in models}
    rows = [("Fused F", [colour.image_pixels(f) if f.ndim == 3 else
                         colour.colourise(f, colour.ColourSpec(colour.GREY, "linear", *colour.finite_range([f])))
                         for f in fused.values()])]
    for view in JACOBIAN_VIEWS:
        rows.append((f"{VIEW_BY_KEY[view].title} at ({row},{col})",
                     [colour.colourise(jac[(m, view)], colour.with_range(jac_spec(mode, gamma_j, ""),
                                                                        ranges[(m, view)]))
                      if (m, view) in jac else None for m in models]))
    dense = {m: backend.dense_maps(m, pair["id"]) for m in models}
    for view, name in DENSE_MAPS.items():
        images = []
        for m in models:
            d = dense.get(m)
            if d is None:
                images.append(None)
                continue
            values = d[name]
            spec = (colour.ColourSpec(colour.SHARE, "linear", 0, 1) if view == "share" else
                    colour.with_range(jac_spec(mode, gamma_g, ""), colour.limits({0: values}, mode, False)[0]))
            images.append(colour.colourise(values, spec))
        rows.append((VIEW_BY_KEY[view].title, images))
    return figures.sheet_png(models, rows, title=f"{pair['label']} · pixel ({row}, {col}) · {mode} · "
                                                  f"gamma J {clamp_gamma(gamma_j)} · gamma G {clamp_gamma(gamma_g)}")


# ------------------------------------------------------------------ the browser side (assets/fs_hover.js)
clientside(ClientsideFunction("fs", "setShape"), Output("fs-js-sink", "data"), Input("fs-pair", "data"))
clientside(ClientsideFunction("fs", "pin"), Output("fs-js-sink", "data", allow_duplicate=True),
           Input("fs-pinned", "data"), prevent_initial_call="initial_duplicate")
clientside(ClientsideFunction("fs", "setView"), Output("fs-js-sink", "data", allow_duplicate=True),
           Input("fs-grid-version", "data"), Input("fs-jac-mode", "value"), Input("fs-shared", "value"),
           Input("fs-gamma-j", "value"), prevent_initial_call=True)
clientside(ClientsideFunction("fs", "regionMode"), Output("fs-js-sink", "data", allow_duplicate=True),
                    Input("fs-region-mode", "value"), prevent_initial_call=True)
clientside(ClientsideFunction("fs", "drawRegion"), Output("fs-js-sink", "data", allow_duplicate=True),
                    Input("fs-region", "data"), Input("fs-grid-version", "data"), prevent_initial_call=True)
