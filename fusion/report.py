"""``python -m fusion report``: one self-contained HTML file of fusion quality metrics and saliency.

    python -m fusion report --sample head-axial-090 --models funfusean masknet --out report.html [--dense]
    python -m fusion report --pair mri.png pet.png --out report.html
    python -m fusion report --pairs DIR --out report.html      # NAME_mri.EXT beside NAME_pet.EXT

One pair: the inputs, each model's fused image (in colour for a colour PET), its guidance maps
dF(p)/dMRI(p), dF(p)/dPET(p) and MRI-share histogram over the brain mask where the dense result
is cached (or computed with ``--dense``), and the metrics table (``fusion.metrics``). A folder:
per model the mean and standard deviation of every metric across pairs, and one row per
(pair, model), with a progress bar. Plotly figures carry the plotly.js bundle inline: the file
opens without network access. Results go through the service's disk cache (``fusion.quality``).
"""
from __future__ import annotations

import argparse
import base64
import html
import io
import math
from pathlib import Path

import numpy as np

from .errors import InvalidInput
from .metrics import HIGHER_IS_BETTER, METRICS, UNITS
from .quality import BRAIN_THRESHOLD, SALIENCY_KEYS, quality_row

COLUMNS = (*METRICS, *SALIENCY_KEYS)
HISTOGRAM_BINS = 40
STYLE = """body{font-family:system-ui,sans-serif;margin:1.5em;color:#222}table{border-collapse:collapse;margin:.5em 0}
td,th{border:1px solid #ccc;padding:2px 8px;text-align:right}th{background:#f3f3f3}td.l,th.l{text-align:left}
.best{font-weight:bold;background:#e6f4e6}.note{color:#666;font-size:.9em}img.in{width:256px;image-rendering:pixelated}"""


def pair_files(directory) -> list[tuple[str, Path, Path]]:
    """(name, MRI path, PET path) of every ``NAME_mri.EXT`` with a ``NAME_pet.EXT`` beside it in ``directory``
    (the rule of ``fusion.training_data.pairs_in_directory``), sorted by name."""
    directory = Path(directory)
    if not directory.is_dir():
        raise InvalidInput(f"{directory}: not a directory")
    found = []
    for mri in sorted(directory.glob("*_mri.*")):
        name = mri.name.rsplit("_mri.", 1)[0]
        pet = next(iter(sorted(directory.glob(f"{name}_pet.*"))), None)
        if pet is not None:
            found.append((name, mri, pet))
    if not found:
        raise InvalidInput(f"no NAME_mri.EXT / NAME_pet.EXT pairs found in {directory}")
    return found


def fmt(value) -> str:
    """A table cell: 4 significant digits, "n/a" for NaN or None."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return f"{value:.4g}" if isinstance(value, (float, int, np.floating)) else html.escape(str(value))


def best_values(rows: list[dict], columns=COLUMNS) -> dict[str, float]:
    """The best finite value of each metric column over ``rows`` (the saliency numbers have no best)."""
    best = {}
    for col in (c for c in columns if c in HIGHER_IS_BETTER):
        values = [r.get(col) for r in rows]
        values = [v for v in values if isinstance(v, (int, float)) and not math.isnan(v)]
        if values:
            best[col] = max(values) if HIGHER_IS_BETTER[col] else min(values)
    return best


def header_cell(column: str) -> str:
    """A column's header: its name, unit and direction (↑ higher is better; saliency numbers: none)."""
    arrow = (" ↑" if HIGHER_IS_BETTER[column] else " ↓") if column in HIGHER_IS_BETTER else ""
    return f"<th>{html.escape(column)}<br><span class=note>{html.escape(UNITS.get(column, ''))}{arrow}</span></th>"


def html_table(rows: list[dict], label_columns: tuple[str, ...], columns=COLUMNS, mark_best: bool = True) -> str:
    """An HTML table of ``rows``; the best value of each column in bold (when ``mark_best``)."""
    best = best_values(rows, columns) if mark_best and len(rows) > 1 else {}
    head = "".join(f'<th class="l">{html.escape(c)}</th>' for c in label_columns)
    head += "".join(header_cell(c) for c in columns)
    body = []
    for r in rows:
        cells = "".join(f'<td class="l">{html.escape(str(r.get(c, "")))}</td>' for c in label_columns)
        for c in columns:
            v = r.get(c)
            mark = ' class="best"' if c in best and v == best[c] else ""
            cells += f"<td{mark}>{fmt(v)}</td>"
        if r.get("error"):
            cells += f'<td class="l note">{html.escape(r["error"])}</td>'
        body.append(f"<tr>{cells}</tr>")
    return f"<table><tr>{head}</tr>{''.join(body)}</table>"


def png_uri(image: np.ndarray) -> str:
    """(H, W) grey or (H, W, 3) RGB in [0, 1] -> a PNG data URI."""
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.round(np.clip(image, 0, 1) * 255).astype(np.uint8)).save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def model_figure(name: str, pair, fused: np.ndarray, dense, threshold: float):
    """A Plotly figure of one model: fused image, guidance maps and MRI-share histogram (when ``dense``)."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    shown = pair.colour_fused(fused) if pair.is_colour else np.clip(fused, 0, 1)
    if dense is None:
        fig = make_subplots(rows=1, cols=1, subplot_titles=[f"{name}: fused"])
        fig.add_trace(go.Image(source=png_uri(shown)), 1, 1)
        fig.update_layout(height=330, width=330)
    else:
        titles = [f"{name}: fused", "guidance dF(p)/dMRI(p)", "guidance dF(p)/dPET(p)",
                  f"MRI share, brain mask (MRI > {threshold:g})"]
        fig = make_subplots(rows=1, cols=4, subplot_titles=titles, horizontal_spacing=0.05)
        fig.add_trace(go.Image(source=png_uri(shown)), 1, 1)
        limit = float(np.nanmax(np.abs([dense.guidance_a, dense.guidance_b]))) or 1.0
        for col, (m, bar_x) in enumerate(((dense.guidance_a, 0.47), (dense.guidance_b, 0.72)), start=2):
            fig.add_trace(go.Heatmap(z=np.asarray(m, np.float32)[::-1], colorscale="RdBu_r", zmin=-limit, zmax=limit,
                                     showscale=col == 3, colorbar=dict(x=bar_x, len=0.8)), 1, col)
        share = np.asarray(dense.mri_share)[np.asarray(pair.mri) > threshold]
        share = share[np.isfinite(share)]
        counts, edges = np.histogram(np.clip(share, 0, 1), bins=HISTOGRAM_BINS, range=(0, 1))
        fig.add_trace(go.Bar(x=(edges[:-1] + edges[1:]) / 2, y=counts / max(share.size, 1), width=1 / HISTOGRAM_BINS,
                             marker_color="#555"), 1, 4)
        fig.update_xaxes(title_text="MRI share", range=[0, 1], row=1, col=4)
        fig.update_yaxes(title_text="fraction of pixels", row=1, col=4)
        for col in (2, 3):
            fig.update_yaxes(scaleanchor=f"x{col}", showticklabels=False, row=1, col=col)
            fig.update_xaxes(showticklabels=False, row=1, col=col)
        fig.update_layout(height=330, width=1300)
    fig.update_xaxes(showticklabels=False, row=1, col=1)
    fig.update_yaxes(showticklabels=False, row=1, col=1)
    fig.update_layout(showlegend=False, margin=dict(l=10, r=10, t=40, b=10))
    return fig


def summary_rows(rows: list[dict], models: list[str]) -> list[dict]:
    """Per model: mean and sample standard deviation (n - 1) of every column over the pairs where it is
    finite, {"model", "pairs", COL: mean, COL + " sd": sd}; SD is NaN for one pair."""
    out = []
    for m in models:
        mine = [r for r in rows if r["model"] == m]
        summary = {"model": m, "pairs": len(mine)}
        for c in COLUMNS:
            v = np.array([r[c] for r in mine], dtype=np.float64)
            v = v[np.isfinite(v)]
            summary[c] = float(v.mean()) if v.size else math.nan
            summary[f"{c} sd"] = float(v.std(ddof=1)) if v.size > 1 else math.nan
        out.append(summary)
    return out


def summary_table(summaries: list[dict]) -> str:
    """The folder's per-model table: "mean ± sd" cells, the best mean of each column in bold."""
    best = best_values(summaries) if len(summaries) > 1 else {}
    head = '<th class="l">model</th><th>pairs</th>' + "".join(header_cell(c) for c in COLUMNS)
    body = ""
    for s in summaries:
        cells = f'<td class="l">{html.escape(s["model"])}</td><td>{s["pairs"]}</td>'
        for c in COLUMNS:
            mark = ' class="best"' if c in best and s[c] == best[c] else ""
            cells += f"<td{mark}>{fmt(s[c])} ± {fmt(s[c + ' sd'])}</td>"
        body += f"<tr>{cells}</tr>"
    return f"<table><tr>{head}</tr>{body}</table>"


def page(title: str, parts: list[str]) -> str:
    """The whole HTML document."""
    notes = ("All metrics are higher-is-better (↑), on the 0-255 scale of the fused image clipped to [0, 1]; "
             "EN in bits, MI in nats, SCD, VIF and SSIM summed over the two sources, PSNR of the mean MSE; "
             "see docs/metrics.md. MRI share = influence of MRI / (influence of MRI + of PET) per fused pixel, "
             "from the exact dense Jacobian; “mri_dominated”: fraction of brain-mask pixels with share > 0.5.")
    return (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<style>{STYLE}</style></head><body><h1>{html.escape(title)}</h1><p class=note>{notes}</p>"
            + "\n".join(parts) + "</body></html>")


def open_service(args):
    from .serving import SaliencyService

    return SaliencyService(cache_dir=args.cache_dir, device=args.device)


def single_pair_report(svc, label: str, pair, models: list[str], dense: bool, threshold: float) -> str:
    """The HTML of one pair: inputs, one figure per model, the metrics table."""
    pair_id = svc.put_pair(pair.mri, pair.pet, pair.pet_chroma, pair.pet_range)
    parts = [f"<h2>Inputs: {html.escape(label)}</h2>",
             f"<p><img class=in alt='MRI' src='{png_uri(pair.mri)}'> <img class=in alt='PET' "
             f"src='{png_uri(pair.colour_pet())}'></p>"]
    rows, first = [], True
    for name in models:
        result = svc.dense(name, pair_id) if dense else svc.cached_dense(name, pair_id)
        rows.append(quality_row(svc, name, pair_id, threshold))
        fig = model_figure(name, pair, svc.fuse(name, pair_id), result, threshold)
        parts.append(fig.to_html(full_html=False, include_plotlyjs=first))
        if result is None:
            parts.append("<p class=note>no dense result cached: rerun with --dense for guidance maps and "
                         "MRI share</p>")
        first = False
    parts.insert(2, "<h2>Metrics</h2>" + html_table(rows, ("model",)))
    return page(f"Fusion quality report: {label}", parts)


def folder_report(svc, directory, models: list[str], dense: bool, threshold: float, quiet: bool = False) -> str:
    """The HTML of a folder: per-model means and SDs, a bar chart of them, one row per (pair, model)."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots
    from tqdm import tqdm

    from .io import load_pair

    files = pair_files(directory)
    rows = []
    with tqdm(total=len(files) * len(models), desc="report", unit="fusion", disable=quiet) as bar:
        for name, mri, pet in files:
            pair = load_pair(mri, pet)
            pair_id = svc.put_pair(pair.mri, pair.pet, pair.pet_chroma, pair.pet_range)
            for m in models:
                if dense:
                    svc.dense(m, pair_id)
                rows.append({"pair": name, **quality_row(svc, m, pair_id, threshold)})
                bar.update()
    summaries = summary_rows(rows, models)
    fig = make_subplots(rows=2, cols=6, subplot_titles=COLUMNS, vertical_spacing=0.15)
    for i, c in enumerate(COLUMNS):
        fig.add_trace(go.Bar(x=[s["model"] for s in summaries], y=[s[c] for s in summaries],
                             error_y=dict(type="data", array=[s[c + " sd"] for s in summaries])), i // 6 + 1, i % 6 + 1)
    fig.update_layout(height=600, width=1400, showlegend=False, margin=dict(l=10, r=10, t=40, b=10))
    parts = [f"<h2>Mean ± standard deviation over {len(files)} pairs</h2>", summary_table(summaries),
             fig.to_html(full_html=False, include_plotlyjs=True),
             "<h2>Every pair</h2>", html_table(rows, ("pair", "model"), mark_best=False)]
    return page(f"Fusion quality report: {Path(directory).name or directory}", parts)


def run_report(args) -> int:
    """Write the report ``args.out`` (see ``add_report_parser``)."""
    from . import list_models
    from .data import load_sample
    from .io import load_pair

    models = list(dict.fromkeys(args.models or list_models()))
    svc = open_service(args)
    try:
        if args.pairs:
            text = folder_report(svc, args.pairs, models, args.dense, args.threshold, args.quiet)
        elif args.sample:
            try:
                pair = load_sample(args.sample)
            except KeyError as exc:
                raise InvalidInput(exc.args[0]) from None
            text = single_pair_report(svc, f"sample {args.sample}", pair, models, args.dense, args.threshold)
        else:
            pair = load_pair(*args.pair)
            text = single_pair_report(svc, " + ".join(Path(p).name for p in args.pair), pair, models, args.dense,
                                      args.threshold)
    finally:
        svc.close()
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text, encoding="utf-8")
    print(f"wrote {out} ({len(models)} models)")
    return 0


def add_report_parser(subparsers) -> argparse.ArgumentParser:
    """Add the ``report`` command to ``python -m fusion``'s subparsers; returns its parser."""
    p = subparsers.add_parser("report", help="fusion quality metrics (and saliency) of one pair or a folder, "
                              "as one self-contained HTML file")
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--pair", nargs=2, metavar=("MRI", "PET"), help="two co-registered image files")
    source.add_argument("--sample", help="a bundled sample pair (see fusion.data.list_samples())")
    source.add_argument("--pairs", metavar="DIR", help="a folder of NAME_mri.EXT / NAME_pet.EXT pairs")
    p.add_argument("--models", nargs="+", help="registered models (default: all)")
    p.add_argument("--out", default="report.html", help="HTML file to write")
    p.add_argument("--dense", action="store_true", help="compute missing dense results (guidance maps, MRI share)")
    p.add_argument("--threshold", type=float, default=BRAIN_THRESHOLD, help="brain mask: MRI intensity above this")
    p.add_argument("--cache-dir", help="saliency cache (default $FUSION_CACHE_DIR or ~/.cache/fusion-saliency)")
    p.add_argument("--device", default="cpu", help="'cpu', 'auto', 'cuda' or 'cuda:N'")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run_report)
    return p
