"""The cohort: "Compute all samples", the whole-image maps of every shown model on every bundled pair.

The same fan-out as a Compute (``dense_job.compute_units``: every core or the Celery workers, niced
helpers, blocks of rows) in one Dash background job (``run_cohort``) behind the same job line and
slots (``dashboard/jobs.py``; its place in line or loss goes to ``ids.COHORT_JOB``), with Cancel and
one progress bar for the whole cohort. Results go to the service's shared cache, so opening any sample
afterwards shows its maps at once; a (model, pair) already cached is skipped, so a cancelled or lost
run goes on where it stopped. Once every unit is cached, "Cohort statistics (CSV)" gives the table of
``python -m fusion saliency --pairs`` (``fusion.cohort``: one row per pair and model).

The cohort is bounded by the server: the bundled samples (``fusion.data.list_samples``) times the
registered models among the page's shown models (``backend.cohort_models``, checked again in the job).
"""
from __future__ import annotations

import time

from dash import ALL, Input, Output, State, ctx
from dash.exceptions import PreventUpdate

from .. import backend, components, dense_job, ids, jobs, stats
from ..registry import Feature

feature = Feature(__name__)
register = feature.register

#: States of a unit (``dense_job.compute_units``) that count as finished.
FINISHED = ("cached", "done", "failed")
#: Seconds between two progress reports of the job (the page polls every ``POLL_MS``).
REPORT_S, POLL_MS = 0.4, 500


@feature.callback(
    Output(ids.COHORT_REQUEST, "data"), Output(ids.COHORT_JOB, "data"),
    Output(ids.COHORT_PROGRESS, "data", allow_duplicate=True),
    Input(ids.COHORT_RUN, "n_clicks"), Input({"type": ids.COHORT_RETRY, "index": ALL}, "n_clicks"),
    Input(ids.GRID_VERSION, "data"),
    prevent_initial_call=True,
)
def request_cohort(_run, retries, version):
    """"Compute all samples" (or the Retry of a lost cohort job): the shown models for the background job, and
    forget the previous job's place in line, loss and progress.

    The grid version is an Input only so that Dash holds a click back until the grid is up to date
    (as for Compute); a new version alone requests nothing.
    """
    clicked = [i for p, i in ctx.triggered_prop_ids.items() if p.endswith(".n_clicks")]
    if not clicked or not version or (ids.COHORT_RUN not in clicked and not any(retries)):
        raise PreventUpdate
    models = backend.cohort_models(version.get("models"))
    if not models:
        raise PreventUpdate
    return {"models": models, "t": time.time()}, None, None


def summarise(report: dict, states: dict, names: dict) -> dict:
    """Update the page's ``report`` from the units' states: finished units, the bar's value in percent (whole
    units, a computing one by its pixels done; it never goes back), computed, cached and failed units."""
    fraction = sum(1.0 if s["state"] in FINISHED else min(s.get("done", 0) / max(s.get("total", 1), 1), 1.0)
                   for s in states.values()) / max(len(states), 1)
    report.update(finished=sum(s["state"] in FINISHED for s in states.values()),
                  value=max(report["value"], round(100.0 * fraction, 1)),
                  computed=sum(s["state"] == "done" for s in states.values()),
                  cached=sum(s["state"] == "cached" for s in states.values()),
                  failed=[[names[u], u[0], s.get("error") or "failed"] for u, s in states.items()
                          if s["state"] == "failed"])
    return report


@feature.callback(
    Output(ids.COHORT_RESULT, "data"),
    Input(ids.COHORT_REQUEST, "data"),
    background=True,
    progress=Output(ids.COHORT_PROGRESS, "data"),
    cancel=[Input(ids.COHORT_CANCEL, "n_clicks")],
    running=[(Output(ids.COHORT_RUN, "disabled"), True, False),
             (Output(ids.COHORT_CANCEL, "disabled"), False, True)],
    interval=POLL_MS,
    prevent_initial_call=True,
)
@jobs.news_to(ids.COHORT_JOB)
def run_cohort(set_progress, request):
    """Whole-image maps of the requested models on every bundled sample, in a background job fanned out like a
    Compute; already cached units are skipped. Progress over the whole cohort goes out every ~0.4 s, and the
    summary (computed, cached, failed with errors) as the last progress and as the result (read as State)."""
    if not request or not isinstance(request, dict):
        raise PreventUpdate
    models = backend.cohort_models(request.get("models"))  # the request came from the page: checked again
    if not models:
        raise PreventUpdate
    backend.set_threads(backend.config().job_threads)
    units = backend.cohort_units(models)
    names = {(m, pair_id): name for name, m, pair_id in units}  # unit -> its sample
    report = {"t": request.get("t"), "state": "running", "models": models, "pairs": len({u[0] for u in units}),
              "total": len(units), "finished": 0, "value": 0.0, "computed": 0, "cached": 0, "failed": []}
    latest, last = {}, [0.0]

    def progress(states: dict) -> None:
        latest.update(states)
        now = time.monotonic()
        if now - last[0] >= REPORT_S:
            last[0] = now
            set_progress(dict(summarise(report, states, names)))

    try:
        states = dense_job.compute_units(list(names), jobs.job_key(), progress)
    except Exception as exc:  # noqa: BLE001 - the page says what went wrong; finished units stay cached
        svc, why, states = backend.service(), f"{type(exc).__name__}: {exc}", {}
        for unit in names:
            state = latest.get(unit, {"state": "queued"})
            states[unit] = (state if state["state"] in FINISHED else {"state": "done"} if svc.has_dense(*unit)
                            else {"state": "failed", "error": why})
    summarise(report, states, names)["state"] = "done"
    set_progress(dict(report))
    return report


@feature.callback(
    Output(ids.COHORT_CANCELLED, "data"),
    Input(ids.COHORT_CANCEL, "n_clicks"), State(ids.COHORT_PROGRESS, "data"),
    prevent_initial_call=True,
)
def remember_cancel(_clicks, report):
    """Cancel (Dash stops the job's process): remember which job, so that its last progress reads as cancelled."""
    if not report:
        raise PreventUpdate
    return {"t": report.get("t")}


@feature.callback(
    Output(ids.COHORT_STATUS, "children"),
    Input(ids.COHORT_PROGRESS, "data"), Input(ids.COHORT_CANCEL, "disabled"), Input(ids.COHORT_CANCELLED, "data"),
    Input(ids.COHORT_JOB, "data"),
)
def show_status(report, idle, cancelled, line):
    """The progress bar while the job runs, then its summary, or where it was cancelled (nothing while it
    waits in line: the message above says so)."""
    if not idle and (line or {}).get("state") == "waiting":
        return None
    stopped = bool(idle and report and cancelled and cancelled.get("t") == report.get("t")
                   and report.get("state") == "running")
    return components.cohort_status(report, running=not idle, cancelled=stopped)


@feature.callback(
    Output(ids.COHORT_MSG, "children"),
    Input(ids.COHORT_JOB, "data"), Input(ids.COHORT_CANCEL, "disabled"),
)
def job_message(line, idle):
    """Under "Compute all samples": the job's place in line while it waits; a lost job, with a Retry."""
    return components.job_message(line, idle, retry={"type": ids.COHORT_RETRY, "index": 0},
                                  waiting_id=ids.COHORT_WAITING, lost_id=ids.COHORT_LOST)


@feature.callback(
    Output(ids.COHORT_CSV, "disabled"), Output(ids.COHORT_CSV, "title"),
    Input(ids.GRID_VERSION, "data"), Input(ids.COHORT_CANCEL, "disabled"),
)
def csv_ready(version, _idle):
    """"Cohort statistics (CSV)" is enabled once every (sample, model) of the shown models is cached (checked
    when the grid changes and when a cohort job ends)."""
    models = backend.cohort_models((version or {}).get("models") or [])
    if not models:
        return True, "no model shown"
    cached, total = backend.cohort_cached(models)
    return cached < total, f"{cached} of {total} (sample, model) maps computed"


@feature.callback(
    Output(ids.COHORT_DOWNLOAD, "data"),
    Input(ids.COHORT_CSV, "n_clicks"),
    State(ids.GRID_VERSION, "data"), State(ids.MASK_THRESHOLD, "value"),
    prevent_initial_call=True,
)
def download_csv(clicks, version, threshold):
    """The cohort's statistics.csv (``fusion.cohort``) of the shown models on every bundled sample, from the
    shared cache, over the page's brain mask MRI > threshold."""
    models = backend.cohort_models((version or {}).get("models") or [])
    if not clicks or not models:
        raise PreventUpdate
    value = min(max(float(threshold if threshold is not None else stats.BRAIN_THRESHOLD), 0.0), 1.0)
    return dict(content=backend.cohort_csv(models, value), filename="cohort-statistics.csv", type="text/csv")
