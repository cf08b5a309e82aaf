"""The fusion quality metrics table: one row per shown model, sortable, the best value per column marked.

The numbers come from ``fusion.quality`` through ``backend.quality_rows``: EN, SD, SF, AG, MI, SCD,
VIF, Qabf, SSIM and PSNR of each model's fused image (all higher-is-better), and, once a model's
dense result is cached, its mean MRI share and MRI-dominated fraction over the brain mask (no
direction: they describe, not rank). Each (model, pair) is computed once, on first view, and
stored in the service's disk cache for every process and user; later views only read it.

``metrics_card()`` is the layout piece; ``register(app)`` attaches its callback (idempotent);
``metrics_rows`` and ``statistics_csv`` give the numbers for the statistics CSV.
"""
from __future__ import annotations

import csv
import io
import math

import dash_bootstrap_components as dbc
from dash import Input, Output, dash_table, dcc, html
from dash.exceptions import PreventUpdate

from fusion.metrics import HIGHER_IS_BETTER, METRICS, UNITS
from fusion.quality import SALIENCY_KEYS

from .. import backend, ids, stats
from ..registry import Feature

feature = Feature(__name__)
register = feature.register

TABLE_ID = ids.METRICS_TABLE
SALIENCY_NAMES = {"mean_mri_share": "mean MRI share", "mri_dominated": "MRI-dominated"}
CSV_FIELDS = ("model", *METRICS, *SALIENCY_KEYS, "error")
BEST_STYLE = {"fontWeight": "bold", "backgroundColor": "#e6f4e6"}


def metrics_rows(pair_id: str, models, threshold: float | None = None) -> list[dict]:
    """One dict per model: {"model", "EN", ..., "PSNR", "mean_mri_share", "mri_dominated", "error"};
    NaN where a number is undefined or not available (no dense result: the saliency numbers)."""
    return backend.quality_rows(pair_id, list(models), stats.BRAIN_THRESHOLD if threshold is None else threshold)


def statistics_csv(region_rows: list[dict], metric_rows: list[dict]) -> str:
    """One CSV table: each region row of the statistics (model, region, pixels, mean_share, mri_dominated)
    followed by its model's quality metrics; a model without region rows (no whole-image result yet)
    gets one row with its metrics only. NaN as empty cells."""
    metrics = {row["model"]: row for row in metric_rows}
    fields = ["model", "region", "pixels", "mean_share", "mri_dominated", *METRICS]
    rows = [{**metrics.get(row["model"], {}), **row} for row in region_rows]
    covered = {row["model"] for row in region_rows}
    rows += [row for model, row in metrics.items() if model not in covered]
    return csv_text(rows, fields)


def metrics_csv(rows: list[dict]) -> str:
    """The metrics rows as CSV text (NaN as empty cells, inf as "inf")."""
    return csv_text(rows, CSV_FIELDS)


def csv_text(rows: list[dict], fields: list[str]) -> str:
    """``rows`` as CSV text with the columns ``fields`` (other keys ignored; NaN as empty cells)."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=fields, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: ("" if isinstance(v, float) and math.isnan(v) else v) for k, v in row.items()})
    return buffer.getvalue()


def json_number(value):
    """A cell value the browser can sort: finite floats rounded to 4 significant digits, else None."""
    if not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(f"{value:.4g}")


def best_styles(rows: list[dict]) -> list[dict]:
    """DataTable conditional styles marking the best value of each metric column (none for one row)."""
    styles = []
    for col in METRICS if len(rows) > 1 else ():
        values = [r[col] for r in rows if r.get(col) is not None]
        if values:
            best = max(values) if HIGHER_IS_BETTER[col] else min(values)
            styles.append({"if": {"filter_query": f"{{{col}}} = {best}", "column_id": col}, **BEST_STYLE})
    return styles


def table(rows: list[dict]):
    """The DataTable of ``metrics_rows`` (values as ``json_number``), or a note when there is nothing."""
    if not rows:
        return html.Small("no model shown", className="text-muted")
    data = [{"model": r["model"], **{k: json_number(r[k]) for k in (*METRICS, *SALIENCY_KEYS)},
             "note": r.get("error") or ""} for r in rows]
    columns = [{"name": ["", "model"], "id": "model"}]
    columns += [{"name": [f"{k} ↑" if HIGHER_IS_BETTER[k] else f"{k} ↓", UNITS[k] or " "], "id": k,
                 "type": "numeric"} for k in METRICS]
    columns += [{"name": ["saliency (brain mask)", SALIENCY_NAMES[k]], "id": k, "type": "numeric"}
                for k in SALIENCY_KEYS]
    if any(d["note"] for d in data):
        columns.append({"name": ["", "note"], "id": "note"})
    return dash_table.DataTable(
        id=ids.METRICS_DATATABLE, data=data, columns=columns, sort_action="native", merge_duplicate_headers=True,
        style_table={"overflowX": "auto"}, style_cell={"fontSize": "0.85rem", "padding": "2px 6px"},
        style_header={"fontWeight": "bold", "backgroundColor": "#f3f3f3"},
        style_data_conditional=best_styles(data))


def metrics_card():
    """The layout piece: title, the direction of every column, and the table (filled by ``show_metrics``)."""
    return dbc.Card(dbc.CardBody([
        html.H6("Fusion quality metrics", className="card-title"),
        html.Small("↑ higher is better, for all ten metrics (PSNR too: less error); best per column in bold. "
                   "On the 0-255 scale; EN bits, MI nats; SCD, VIF, SSIM summed over MRI and PET; "
                   "see docs/metrics.md. Saliency: mean MRI share and fraction of brain-mask pixels with "
                   "share > 0.5, once the whole-image maps are computed.", className="text-muted d-block mb-1"),
        dcc.Loading(html.Div(id=TABLE_ID), type="dot", delay_show=300),
    ]), className="mb-2")


@feature.callback(
    Output(TABLE_ID, "children"),
    Input(ids.GRID_VERSION, "data"), Input(ids.DENSE_STATUS, "data"), Input(ids.MASK_THRESHOLD, "value"),
)
def show_metrics(version, status, threshold):
    """The table for the shown models of the shown pair (models' metrics computed once, then cached)."""
    if not version or not version.get("pair"):
        raise PreventUpdate
    try:
        value = float(threshold if threshold is not None else stats.BRAIN_THRESHOLD)
    except (TypeError, ValueError):
        value = stats.BRAIN_THRESHOLD
    return table(metrics_rows(version["pair"], version.get("models", []), value))
