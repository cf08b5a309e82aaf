"""Whole-image (dense) jobs: Compute, Retry, the background job itself, its status, Cancel, messages.

The job runs as a Dash background callback (``run_dense``) behind the job line of ``dashboard/jobs.py``;
its results go to the service's shared cache, so every page and worker sees them. ``dense_status``
(per model: done, failed, cancelled, lost, missing) drives everything downstream; the maps
themselves are shown by ``maps``.
"""
from __future__ import annotations

import time

from dash import ALL, Input, Output, State, ctx, no_update, set_props
from dash.exceptions import PreventUpdate

from .. import backend, components, dense_job, ids, jobs
from ..paint import dense_views
from ..registry import Feature, by_model, output_ids

feature = Feature(__name__)
register = feature.register

#: Seconds between two messages of a running job's progress, and between two of its previews (see ``run_dense``),
#: and milliseconds between the page's asks for them: every answer that changes the page keeps the browser busy
#: for tens of milliseconds, which a hover's answer may have to wait behind.
PROGRESS_EVERY_S, PREVIEW_EVERY_S, POLL_MS = 2.0, 4.0, 1000


def live(progress: dict | None, pair_id: str, running: bool) -> dict:
    """Per-model progress of the running job for this pair (nothing when no job runs)."""
    if not running or not progress or progress.get("pair") != pair_id:
        return {}
    return progress.get("models", {})


@feature.callback(
    Output(ids.DENSE_REQUEST, "data"), Output(ids.DENSE_JOB, "data"),
    Output(ids.DENSE_PROGRESS, "data", allow_duplicate=True),
    Input(ids.DENSE_RUN, "n_clicks"), Input(ids.every(ids.RETRY, views=False), "n_clicks"),
    Input(ids.GRID_VERSION, "data"), Input({"type": ids.JOB_RETRY, "index": ALL}, "n_clicks"),
    State(ids.DENSE_REQUEST, "data"),
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
    if ids.DENSE_RUN in clicked:
        models = version["models"]
    elif any(job_retries) and clicked[0].get("type") == ids.JOB_RETRY:  # the lost job's models, if still shown
        same = previous and previous["pair"] == version["pair"]
        models = [m for m in version["models"] if m in previous["models"]] if same else version["models"]
    elif any(retries):
        models = [clicked[0]["model"]]
    else:  # retry buttons drawn afresh (no clicks yet)
        raise PreventUpdate
    return {"models": models or version["models"], "pair": version["pair"], "t": time.time()}, None, None


@feature.callback(
    Output(ids.DENSE_RESULT, "data"),
    Input(ids.DENSE_REQUEST, "data"),
    State(ids.JAC_MODE, "value"), State(ids.GAMMA_G, "value"),
    background=True,
    progress=Output(ids.DENSE_PROGRESS, "data"),
    cancel=[Input(ids.DENSE_CANCEL, "n_clicks")],
    running=[(Output(ids.DENSE_RUN, "disabled"), True, False),
             (Output(ids.DENSE_CANCEL, "disabled"), False, True)],
    interval=POLL_MS,
    prevent_initial_call=True,
)
def run_dense(set_progress, request, mode, gamma):
    """Dense Jacobians of the requested models in a background job, fanned out over the cores (or the Celery
    workers) in blocks of rows (``dense_job``).

    Progress per model goes out when a model's state or the preview's model changed (the whole report, to
    ``ids.DENSE_PROGRESS``, which the callbacks downstream follow); counts alone go straight into the
    computing models' progress bars at most every ``PROGRESS_EVERY_S`` (no callback follows them); a coarse
    preview that refines (four PNG views of the model furthest along, named in the progress as
    ``preview_model``) at most every ``PREVIEW_EVERY_S``, only when it changed, and in a store of its own
    (``ids.DENSE_PREVIEW``, shown by the browser itself: ``maps``). Each message keeps the browser busy for
    a while, which a hover's answer may wait behind. The results themselves go to the service's shared
    cache, so every page and worker sees them. The returned failures are only read as State (see
    ``dense_status``).
    """
    if not request:
        raise PreventUpdate
    backend.set_threads(backend.config().job_threads)
    svc = backend.service()
    pair_id = request["pair"]
    report = {"pair": pair_id, "t": request["t"], "models": {m: {"state": "queued"} for m in request["models"]},
              "preview_model": None}
    fused, sent = {}, {"progress": 0.0, "preview": 0.0, "models": None, "srcs": None, "preview_model": None}

    def states_of(models: dict) -> dict:
        return {m: s["state"] for m, s in models.items()}

    def progress(states: dict, preview) -> None:
        report["models"] = {m: {k: v for k, v in s.items() if k in ("state", "done", "total", "error")}
                            for m, s in states.items()}
        now = time.monotonic()
        if now - sent["preview"] >= PREVIEW_EVERY_S:
            sent["preview"] = now
            shown = preview()
            if shown is not None:
                model, maps = shown
                if model not in fused:
                    fused[model] = svc.fuse(model, pair_id)
                srcs = {v: s for v, (s, _) in dense_views(maps, fused[model], mode, gamma).items()}
                if srcs != sent["srcs"]:
                    sent["srcs"], report["preview_model"] = srcs, model
                    set_props(ids.DENSE_PREVIEW, {"data": {"pair": pair_id, "t": request["t"], "model": model,
                                                           "srcs": srcs}})
        before = sent["models"] or {}
        if states_of(report["models"]) != states_of(before) or report["preview_model"] != sent["preview_model"]:
            sent["progress"], sent["models"], sent["preview_model"] = now, report["models"], report["preview_model"]
            set_progress(dict(report))  # sent at once
        elif report["models"] != before and now - sent["progress"] >= PROGRESS_EVERY_S:
            sent["progress"], sent["models"] = now, report["models"]
            for m, s in report["models"].items():
                if s["state"] == "computing" and s != before.get(m):
                    set_props(ids.pid(ids.PROGRESS, m),
                              components.progress_props(components.percent(s.get("done", 0), s.get("total", 1))))

    try:
        states = dense_job.compute(request["models"], pair_id, jobs.job_key(), progress)
    except Exception as exc:  # noqa: BLE001 - the page says what went wrong; finished models stay cached
        states = {m: {"state": "done"} if svc.has_dense(m, pair_id) else
                  {"state": "failed", "error": f"{type(exc).__name__}: {exc}"} for m in request["models"]}
    report["models"] = states
    set_progress(dict(report))
    return {"pair": pair_id, "t": request["t"],
            "models": {m: s for m, s in states.items() if s["state"] == "failed"}}


@feature.callback(
    Output(ids.DENSE_STATUS, "data"),
    Input(ids.GRID_VERSION, "data"), Input(ids.DENSE_PROGRESS, "data"), Input(ids.DENSE_CANCEL, "disabled"),
    Input(ids.OPENED, "data"), Input(ids.DENSE_CANCELLED, "data"), Input(ids.DENSE_JOB, "data"),
    Input(ids.COHORT_CANCEL, "disabled"),
    State(ids.DENSE_STATUS, "data"), State(ids.DENSE_RESULT, "data"), State(ids.DENSE_REQUEST, "data"),
)
def dense_status(version, progress, _idle, _opened, cancelled, job, _cohort_idle, previous, result, request):
    """Per model: "done" (in the shared cache, computed or opened from a file, or by "Compute all samples",
    looked at when that job ends), "failed" (with the error), "cancelled" (with how far it got, until the
    next job reports), "lost" (its job's worker stopped) or "missing".

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


@feature.callback(
    Output(ids.DENSE_CANCELLED, "data"),
    Input(ids.DENSE_CANCEL, "n_clicks"), State(ids.DENSE_PROGRESS, "data"),
    State(ids.every(ids.PROGRESS, views=False), "value"),
    prevent_initial_call=True,
)
def remember_cancel(_clicks, progress, _bars):
    """Cancel (Dash stops the job's process): remember that job and how far its unfinished models got (as far
    as their progress bars show: the job's counts go straight to the bars)."""
    if not progress:
        raise PreventUpdate
    shown = by_model(ids.PROGRESS)
    models = {}
    for m, s in progress["models"].items():
        if s["state"] in ("computing", "queued"):
            total = s.get("total", 1)
            done = max(s.get("done", 0), round(float(shown.get(m) or 0) * total / 100))
            models[m] = {**s, "done": done, "total": total}
    return {"pair": progress["pair"], "t": progress["t"], "models": models}


@feature.callback(
    Output(ids.DENSE_MSG, "children"),
    Input(ids.DENSE_JOB, "data"), Input(ids.DENSE_CANCEL, "disabled"),
)
def job_message(line, idle):
    """Under Compute: the job's place in line while it waits; a lost job, with a Retry that starts it again."""
    return components.job_message(line, idle)


@feature.callback(
    Output(ids.every(ids.STATUS, views=False), "children"),
    Output(ids.every(ids.EMPTY), "children", allow_duplicate=True),
    Input(ids.DENSE_STATUS, "data"), Input(ids.DENSE_PROGRESS, "data"), Input(ids.DENSE_CANCEL, "disabled"),
    Input(ids.DENSE_JOB, "data"), State(ids.every(ids.PROGRESS, views=False), "value"),
    prevent_initial_call="initial_duplicate",
)
def model_status(status, progress, idle, line, _bars):
    """Header of each column: done / waiting in line / computing n% / failed or lost (message and retry) /
    not computed; and, on each message of a running job, the note over each unfinished model's maps
    ("computing", "queued", or "preview" over the model whose preview the browser shows: ``maps``).
    One callback for both: each callback a job's message sets off keeps the browser busy for a while.
    A progress bar drawn again starts where it is (the job's counts go straight to the bars: ``run_dense``)."""
    models = [i["model"] for i in output_ids(0)]
    if not status:
        return [""] * len(models), [no_update] * len(output_ids(1))
    waiting = not idle and (line or {}).get("state") == "waiting"
    running = {} if waiting else live(progress, status["pair"], running=not idle)
    shown = by_model(ids.PROGRESS)
    headers = [components.model_status(m, status["models"].get(m, {"state": "missing"}), running.get(m, {}), line,
                                       waiting, float(shown.get(m) or 0)) for m in models]
    notes = [no_update] * len(output_ids(1))
    if running and ctx.triggered_id == ids.DENSE_PROGRESS:  # else the maps' own callback wrote them (``maps``)
        notes = [map_note(i["model"], status, progress, running) for i in output_ids(1)]
    return headers, notes


def map_note(model: str, status: dict, progress: dict, running: dict):
    """The note over one of ``model``'s whole-image maps while a job runs (no_update once it is done)."""
    if status["models"].get(model, {}).get("state") == "done":
        return no_update
    if progress.get("preview_model") == model:
        return components.preview_note()
    return components.empty_text(status["models"].get(model, {}), running.get(model, {}))
