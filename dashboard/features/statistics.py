"""Influence statistics: MRI-share histograms, the per-region table, and the G_MRI vs G_PET scatter.

The region is the brain mask, or a box or lasso drawn on any image, or the pixels brushed in the
scatter. Everything here reads the models' cached whole-image results.
"""
from __future__ import annotations

import numpy as np
from dash import Input, Output, State, ctx

from .. import backend, components, figures, ids, stats
from ..registry import Feature

feature = Feature(__name__)
register = feature.register


def dense_for(status: dict | None) -> dict[str, dict]:
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


@feature.callback(
    Output(ids.HISTOGRAM, "figure"), Output(ids.STATS_TABLE, "children"), Output(ids.STATS_ROWS, "data"),
    Input(ids.DENSE_STATUS, "data"), Input(ids.REGION, "data"), Input(ids.MASK_THRESHOLD, "value"),
    State(ids.PAIR, "data"),
)
def statistics(status, region, threshold, pair):
    """MRI-share histograms on one axis range, and the per-region table, for the active region."""
    dense = dense_for(status)
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
    return figures.share_histograms(hists, summaries, label), components.region_table(rows), rows


@feature.callback(
    Output(ids.SCATTER, "figure"),
    Input(ids.DENSE_STATUS, "data"),
    State(ids.PAIR, "data"), State(ids.MASK_THRESHOLD, "value"),
)
def scatter(status, pair, threshold):
    """G_MRI vs G_PET over the brain-mask pixels (subsampled for WebGL), one subplot per model. The browser
    moves each model's "hovered pixel" marker to the selected pixel (``assets/fs_scatter.js``)."""
    dense = dense_for(status)
    if not dense or status["pair"] != pair["id"]:
        return figures.guidance_scatter({})
    a, _ = backend.pair_arrays(pair["id"])
    brain = np.flatnonzero(stats.brain_mask(a, float(threshold or stats.BRAIN_THRESHOLD)))
    idx = figures.subsample(brain, backend.config().max_scatter_points)
    points = {m: (d["guidance_a"].ravel()[idx], d["guidance_b"].ravel()[idx], idx) for m, d in dense.items()}
    return figures.guidance_scatter(points)


@feature.callback(
    Output(ids.REGION, "data"),
    Input(ids.SCATTER, "selectedData"), Input(ids.REGION_CLEAR, "n_clicks"),
    prevent_initial_call=True,
)
def brushed_region(selected, _clear):
    """Brushing the scatter selects those pixels as the region; "clear region" drops it."""
    if ctx.triggered_id == ids.REGION_CLEAR or not selected:
        return None
    indices = sorted({int(p["customdata"]) for p in selected.get("points", []) if "customdata" in p})
    return {"kind": "pixels", "indices": indices} if indices else None
