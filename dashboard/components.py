"""The small UI pieces that callbacks send: messages, badges, the model card, the statistics table, and
the controls and progress of "Compute all samples" (the cohort).

Each function returns Dash components and does nothing else (no service calls), so a feature's
callback reads as: ask the backend, then pick a piece from here. The grid is in ``panels.py``,
the page in ``layout.py``.
"""
from __future__ import annotations

import dash_bootstrap_components as dbc
import numpy as np
from dash import dcc, html

from . import colour, ids, job_slots

#: Classes of the alerts under the upload boxes.
_NOTE = "mt-2 small mb-0"


def ticks_children(spec: colour.ColourSpec) -> list:
    """The tick labels of a colour bar drawn with ``spec``, each placed along the bar."""
    return [html.Span(text, style={"left": f"{100 * pos:.1f}%"}) for pos, text in colour.ticks(spec)]


# ------------------------------------------------------------------ the pair and uploads
def refused(title: str, why: str | list[str]):
    """A refused upload or file: the title in bold, then why (one text, or a list of lines)."""
    lines = [html.Div(line) for line in why] if isinstance(why, list) else [why]
    return dbc.Alert([html.B(title), *lines], color="danger", className=_NOTE, id=ids.UPLOAD_ERROR)


def accepted(text: str):
    """An upload or file taken in, with what is shown now."""
    return dbc.Alert(text, color="success", className=_NOTE, id=ids.UPLOAD_OK)


def half_upload(got: str, missing: str):
    """One image of the pair arrived; the other is still missing."""
    return dbc.Alert(f"Got the {got} image; now add the {missing} image.", color="info", className=_NOTE)


def opened_pair_only(name: str, problem: str):
    """An HDF5 file whose pair opened but whose maps do not fit the loaded model."""
    return dbc.Alert([html.B(f"Opened the pair of {name}, not its maps: "), f"{problem}. ",
                      "“Compute” makes them with the loaded model."], color="warning", className=_NOTE,
                     id=ids.UPLOAD_WARNING)


def stale_pair(key: str, problem: Exception, shown: str):
    """A linked pair that cannot be opened; ``shown`` is the label of the pair shown instead."""
    return dbc.Alert(f"Could not open pair {key!r}: {problem}. Showing {shown} instead; "
                     "upload the images again to share them.", color="warning", className="mt-2 small")


# ------------------------------------------------------------------ the grid
def pin_badge(pinned: dict | None):
    """Above the readout: how to select a pixel, or where it is pinned."""
    if not pinned:
        return html.Small("Hover any image to select a pixel; click to pin it; arrow keys step it.",
                          className="text-muted")
    return dbc.Badge(f"pinned at (row {pinned['row']}, col {pinned['col']}) · click or Esc to release",
                     color="warning", text_color="dark", id=ids.PINNED_BADGE)


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


# ------------------------------------------------------------------ whole-image jobs
def job_message(line: dict | None, idle: bool, retry=None, waiting_id: str = ids.JOB_WAITING,
                lost_id: str = ids.JOB_LOST):
    """Under Compute: the job's place in line while it waits; a lost job, with a Retry; else None.
    ``retry``, ``waiting_id``, ``lost_id``: the ids of the Retry button and of the two alerts (the
    Compute's by default; the cohort has its own)."""
    state = (line or {}).get("state")
    if state == "waiting" and not idle:
        return dbc.Alert(job_slots.waiting_text(line, long=True), color="info", className="mt-2 mb-0 py-1 small",
                         id=waiting_id)
    if state == "lost" and idle:
        return dbc.Alert([html.B("The job was lost "), f"({line.get('why') or 'its worker stopped'}). ",
                          dbc.Button("Retry", id=retry or {"type": ids.JOB_RETRY, "index": 0}, size="sm",
                                     color="danger", className="py-0 ms-1")],
                         color="danger", className="mt-2 mb-0 py-1 small", id=lost_id)
    return None


def percent(done: int, total: int) -> float:
    """How far a model's job got, in percent of its pixels."""
    return 100.0 * done / max(total, 1)


def progress_props(pct: float) -> dict:
    """The properties of a model's progress bar (``ids.PROGRESS``) at ``pct`` percent."""
    return {"value": pct, "label": f"{pct:.0f}%"}


def model_status(model: str, status: dict, job: dict, line: dict | None, waiting: bool, shown: float = 0.0):
    """Under a column's header: done / waiting in line / computing n% / queued / failed or lost (with
    retry) / cancelled / not computed. ``status``: the model's dense status, ``job``: its live progress,
    ``shown``: the percent its progress bar shows now (a bar never goes back)."""
    if status["state"] == "done":
        return dbc.Badge("whole-image maps ready", color="success", className="fs-done")
    if waiting:
        return dbc.Badge(job_slots.waiting_text(line), color="info", className="fs-waiting")
    if job.get("state") == "computing":
        props = progress_props(max(percent(job.get("done", 0), job.get("total", 1)), shown))
        return dbc.Progress(**props, striped=True, animated=False, className="fs-progress",
                            id=ids.pid(ids.PROGRESS, model))
    if job.get("state") == "queued":
        return dbc.Badge("queued", color="info")
    if status["state"] in ("failed", "lost"):
        return html.Div([html.Span(f"job {status['state']}: ", className="fw-bold"),
                         html.Span(status.get("error", ""), className="fs-error-text"),
                         dbc.Button("retry", id=ids.pid(ids.RETRY, model), size="sm", color="danger",
                                    outline=True, className="ms-1 py-0")], className="text-danger small")
    if status["state"] == "cancelled":
        pct = percent(status.get("done", 0), status.get("total", 1))
        return html.Div([dbc.Badge(f"cancelled at {pct:.0f}%", color="warning", text_color="dark",
                                   className="fs-cancelled"),
                         html.Small(" “Compute” starts again", className="text-muted")])
    return html.Small("whole-image maps not computed", className="text-muted")


def empty_text(status: dict, job: dict) -> str:
    """Over a whole-image map not shown: why (computing, queued, failed, lost, cancelled, not computed)."""
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


def preview_note():
    """Over a map that shows a running job's coarse preview."""
    return html.Span("preview, refining…", className="fs-empty-note")


# ------------------------------------------------------------------ the cohort: every bundled sample
def cohort_controls():
    """Under Compute: "Compute all samples" with its Cancel, line message, progress and summary, and the
    "Cohort statistics (CSV)" download (enabled once every unit is cached)."""
    return html.Div([
        dbc.ButtonGroup([
            dbc.Button("Compute all samples", id=ids.COHORT_RUN, color="primary", outline=True, size="sm"),
            dbc.Button("Cancel", id=ids.COHORT_CANCEL, color="secondary", size="sm", disabled=True),
        ]),
        html.Div(id=ids.COHORT_MSG, role="status"),
        html.Div(id=ids.COHORT_STATUS, role="status", className="small"),
        dbc.Button("Cohort statistics (CSV)", id=ids.COHORT_CSV, size="sm", outline=True, color="primary",
                   disabled=True, className="mt-1"),
        dcc.Download(id=ids.COHORT_DOWNLOAD),
    ], className="mt-2")


def cohort_status(report: dict | None, running: bool, cancelled: bool):
    """The cohort job's progress bar while it runs (units done of all, ``report["value"]`` percent), then its
    summary: computed, already cached, failed (each with its error), or where it was cancelled."""
    if not report:
        return None
    size = f"{report['pairs']} pairs × {len(report['models'])} models"
    if cancelled:
        return dbc.Alert(f"Cancelled at {report['value']:.0f}% ({report['finished']} of {report['total']}): "
                         "finished maps stay cached; “Compute all samples” goes on from there.", color="warning",
                         className="mt-1 mb-0 py-1", id=ids.COHORT_SUMMARY)
    if running and report["state"] == "running":
        return html.Div([
            dbc.Progress(value=report["value"], label=f"{report['finished']} of {report['total']}", striped=True,
                         animated=False, className="fs-progress mt-1", id=ids.COHORT_BAR),
            html.Span(f"{size}; {report['cached']} were cached", className="text-muted")])
    if report["state"] == "running":
        return None  # the job ended without its summary: the line message says why (lost)
    failed = report["failed"]
    lines = [html.Div(f"{size}: {report['computed']} computed, {report['cached']} already cached"
                      + (f", {len(failed)} failed" if failed else "") + ".")]
    lines += [html.Div([html.B(f"{pair} · {model}: "), html.Span(error, className="fs-error-text")])
              for pair, model, error in failed]
    return dbc.Alert(lines, color="danger" if failed else "success", className="mt-1 mb-0 py-1",
                     id=ids.COHORT_SUMMARY)


# ------------------------------------------------------------------ statistics
def region_table(rows: list[dict]):
    """The per-region table of ``stats.region_table`` rows (model, region, pixels, shares)."""
    return dbc.Table([
        html.Thead(html.Tr([html.Th(t) for t in ("model", "region", "pixels", "mean MRI share", "MRI-dominated")])),
        html.Tbody([html.Tr([html.Td(r["model"]), html.Td(r["region"]), html.Td(f"{r['pixels']:,}"),
                             html.Td(colour.format_value(r["mean_share"])),
                             html.Td("n/a" if not np.isfinite(r["mri_dominated"]) else f"{r['mri_dominated']:.1%}")])
                    for r in rows]),
    ], size="sm", striped=True, className="fs-stats-table", id=ids.REGION_TABLE)
