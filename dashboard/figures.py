"""Pure builders of Plotly figures and of the downloadable PNG sheet.

No Dash state here: every function takes arrays and returns a figure or bytes,
so each can be unit-tested alone.
"""
from __future__ import annotations

import io
from collections.abc import Mapping, Sequence

import numpy as np
import plotly.graph_objects as go
from PIL import Image, ImageDraw
from plotly.subplots import make_subplots

MRI_COLOUR = "#5e3c99"   # purple end of the PuOr share scale
PET_COLOUR = "#e66101"   # orange end
HIGHLIGHT = "#d62728"
FONT = dict(family="system-ui, -apple-system, Segoe UI, Roboto, sans-serif", size=11)


def empty_figure(message: str, height: int = 220) -> go.Figure:
    """A blank figure that says why it is blank (no model, nothing computed yet...)."""
    fig = go.Figure()
    fig.add_annotation(text=message, showarrow=False, font=dict(size=13, color="#6c757d"),
                       xref="paper", yref="paper", x=0.5, y=0.5)
    fig.update_layout(height=height, xaxis_visible=False, yaxis_visible=False, template="plotly_white",
                      margin=dict(l=10, r=10, t=10, b=10), font=FONT)
    return fig


def share_histograms(hists: Mapping[str, tuple[np.ndarray, np.ndarray]],
                     summaries: Mapping[str, dict], region_label: str) -> go.Figure:
    """One histogram of the MRI share per model, side by side on the same x and y ranges.

    ``hists`` maps model -> (fraction of pixels per bin, bin edges) from ``stats.histogram``.
    """
    models = list(hists)
    if not models:
        return empty_figure("No whole-image results yet: compute them to see MRI-share histograms.")
    fig = make_subplots(rows=1, cols=len(models), shared_yaxes=True, horizontal_spacing=0.02,
                        subplot_titles=[_summary_title(m, summaries.get(m, {})) for m in models])
    top = max((float(f.max()) for f, _ in hists.values() if f.size), default=0.0) or 1.0
    for i, model in enumerate(models, start=1):
        fractions, edges = hists[model]
        centres = (edges[:-1] + edges[1:]) / 2
        fig.add_trace(go.Bar(x=centres, y=fractions, width=np.diff(edges), name=model,
                             marker=dict(color=centres, colorscale="PuOr", cmin=0, cmax=1,
                                         line=dict(width=0)),
                             hovertemplate="MRI share %{x:.2f}<br>%{y:.1%} of pixels<extra>" + model + "</extra>"),
                      row=1, col=i)
        fig.add_vline(x=0.5, line=dict(color="#888", dash="dot", width=1), row=1, col=i)
        mean = summaries.get(model, {}).get("mean_share")
        if mean is not None and np.isfinite(mean):
            fig.add_vline(x=mean, line=dict(color="#222", width=1.5), row=1, col=i)
    fig.update_xaxes(range=[0, 1], title_text="MRI share (0 PET, 1 MRI)", tickvals=[0, 0.5, 1])
    fig.update_yaxes(range=[0, top * 1.05], tickformat=".0%")
    fig.update_yaxes(title_text=f"pixels ({region_label})", row=1, col=1)
    fig.update_layout(height=250, showlegend=False, bargap=0, template="plotly_white", font=FONT,
                      margin=dict(l=60, r=10, t=50, b=40))
    fig.update_annotations(font_size=11)
    return fig


def _summary_title(model: str, summary: dict) -> str:
    mean, dom = summary.get("mean_share"), summary.get("mri_dominated")
    if mean is None or not np.isfinite(mean):
        return f"<b>{model}</b><br>no pixels"
    return f"<b>{model}</b><br>mean {mean:.2f} · {dom:.0%} MRI-dominated"


def subsample(indices: np.ndarray, limit: int, seed: int = 0) -> np.ndarray:
    """At most ``limit`` of ``indices``, chosen reproducibly and kept in order."""
    indices = np.asarray(indices)
    if indices.size <= limit:
        return indices
    pick = np.random.default_rng(seed).choice(indices.size, size=limit, replace=False)
    return indices[np.sort(pick)]


def guidance_scatter(points: Mapping[str, tuple[np.ndarray, np.ndarray, np.ndarray]]) -> go.Figure:
    """G_MRI against G_PET over pixels, one subplot per model, on shared axes.

    ``points`` maps model -> (g_mri, g_pet, flat pixel indices); the indices ride
    along as customdata so a box or lasso brush selects pixels. Trace 2k is
    model k's cloud and trace 2k+1 its "hovered pixel" marker, empty here, with
    ``meta={"hovered": model}``: the browser moves it to the selected pixel.
    """
    models = list(points)
    if not models:
        return empty_figure("No whole-image results yet: the scatter needs G_MRI and G_PET.", height=260)
    fig = make_subplots(rows=1, cols=len(models), shared_yaxes=True, shared_xaxes=True,
                        horizontal_spacing=0.02, subplot_titles=[f"<b>{m}</b>" for m in models])
    for i, model in enumerate(models, start=1):
        gx, gy, idx = points[model]
        fig.add_trace(go.Scattergl(x=gx, y=gy, customdata=idx, mode="markers", name=model,
                                   marker=dict(size=3, color="#4c78a8", opacity=0.35),
                                   hovertemplate="G_MRI %{x:.3g}<br>G_PET %{y:.3g}<extra>" + model + "</extra>"),
                      row=1, col=i)
        fig.add_trace(go.Scatter(x=[None], y=[None], mode="markers", name="hovered pixel", hoverinfo="skip",
                                 meta={"hovered": model},
                                 marker=dict(size=12, color="rgba(0,0,0,0)", line=dict(color=HIGHLIGHT, width=2.5))),
                      row=1, col=i)
    fig.update_xaxes(title_text="G_MRI = dF(p)/dMRI(p)", zeroline=True, zerolinecolor="#aaa", matches="x")
    fig.update_yaxes(title_text="G_PET = dF(p)/dPET(p)", row=1, col=1)
    fig.update_yaxes(zeroline=True, zerolinecolor="#aaa")
    fig.update_layout(height=280, showlegend=False, template="plotly_white", dragmode="lasso", font=FONT,
                      margin=dict(l=60, r=10, t=30, b=40), uirevision="scatter")
    fig.update_annotations(font_size=11)
    return fig


def sheet_png(columns: Sequence[str], rows: Sequence[tuple[str, Sequence[np.ndarray | None]]],
              title: str = "", tile: int = 192) -> bytes:
    """A PNG sheet of image tiles: one column per model, one row per view, labelled.

    ``rows`` is [(row label, [RGB(A) uint8 image or None for each column])]; tiles
    are scaled to ``tile`` pixels (nearest neighbour: pixels stay pixels).
    """
    label_w, head_h, pad = 150, 28 + (24 if title else 0), 6
    width = label_w + len(columns) * (tile + pad) + pad
    height = head_h + len(rows) * (tile + pad) + pad
    sheet = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(sheet)
    if title:
        draw.text((pad, 6), title, fill="black")
    for j, name in enumerate(columns):
        draw.text((label_w + j * (tile + pad) + pad, head_h - 20), name, fill="black")
    for i, (label, images) in enumerate(rows):
        y = head_h + i * (tile + pad)
        draw.text((pad, y + tile // 2 - 6), label, fill="black")
        for j, image in enumerate(images):
            x = label_w + j * (tile + pad) + pad
            if image is None:
                draw.rectangle([x, y, x + tile - 1, y + tile - 1], outline="#cccccc")
                draw.text((x + 8, y + tile // 2 - 6), "not available", fill="#888888")
                continue
            picture = Image.fromarray(np.ascontiguousarray(image)).convert("RGBA")
            checker = Image.new("RGBA", picture.size, (235, 235, 235, 255))
            picture = Image.alpha_composite(checker, picture).convert("RGB")
            sheet.paste(picture.resize((tile, tile), Image.NEAREST), (x, y))
    buffer = io.BytesIO()
    sheet.save(buffer, format="PNG")
    return buffer.getvalue()


def region_label(region: Mapping | None) -> str:
    """Human name of the active region (for titles and the table)."""
    if not region:
        return "brain mask"
    return {"box": "box region", "lasso": "lasso region", "pixels": "brushed pixels"}.get(region.get("kind"), "region")


__all__ = ["empty_figure", "guidance_scatter", "region_label", "share_histograms",
           "sheet_png", "subsample"]
