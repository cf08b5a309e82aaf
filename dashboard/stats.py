"""Influence statistics over pixel regions: masks, summaries, the CSV table.

The MRI share of a pixel is ``influence_mri / (influence_mri + influence_pet)``
as computed by the saliency service (``DenseJacobian.mri_share``): 1 means the
fused pixel moved only with MRI, 0 only with PET. Here we only count pixels.
"""
from __future__ import annotations

import csv
import io
from collections.abc import Mapping

import numpy as np
from PIL import Image, ImageDraw

#: A pixel is "MRI-dominated" when its MRI share exceeds this.
DOMINANCE = 0.5
#: Default brain mask: MRI intensity (in [0, 1]) above this.
BRAIN_THRESHOLD = 0.1


def brain_mask(mri: np.ndarray, threshold: float = BRAIN_THRESHOLD) -> np.ndarray:
    """Pixels whose MRI intensity exceeds ``threshold`` (the background is near 0)."""
    return np.asarray(mri) > threshold


def region_mask(region: Mapping | None, shape: tuple[int, int]) -> np.ndarray | None:
    """Rasterise a region drawn in the page, or None for no region.

    ``region`` is {"kind": "box", "points": [[r0, c0], [r1, c1]]} (corners, inclusive),
    {"kind": "lasso", "points": [[r, c], ...]} (a polygon) or
    {"kind": "pixels", "indices": [flat index, ...]} (brushed in the scatter plot).
    """
    if not region:
        return None
    h, w = shape
    kind = region.get("kind")
    mask = np.zeros((h, w), bool)
    if kind == "pixels":
        index = np.asarray(region.get("indices", []), dtype=np.int64)
        index = index[(index >= 0) & (index < h * w)]
        mask.flat[index] = True
        return mask
    points = [(float(r), float(c)) for r, c in region.get("points", [])]
    if kind == "box" and len(points) >= 2:
        (r0, c0), (r1, c1) = points[0], points[-1]
        top, bottom = sorted((int(round(r0)), int(round(r1))))
        left, right = sorted((int(round(c0)), int(round(c1))))
        mask[max(top, 0):min(bottom + 1, h), max(left, 0):min(right + 1, w)] = True
        return mask
    if kind == "lasso" and len(points) >= 3:
        image = Image.new("1", (w, h), 0)
        # PIL draws at pixel centres: (x, y) = (col, row).
        ImageDraw.Draw(image).polygon([(c, r) for r, c in points], fill=1, outline=1)
        return np.asarray(image, dtype=bool)
    return None


def summarise(share: np.ndarray, mask: np.ndarray | None) -> dict:
    """Pixel count, mean MRI share and fraction of MRI-dominated pixels inside ``mask``."""
    values = np.asarray(share)
    if mask is not None:
        values = values[mask]
    values = values[np.isfinite(values)]
    if values.size == 0:
        return {"pixels": 0, "mean_share": float("nan"), "mri_dominated": float("nan")}
    return {"pixels": int(values.size), "mean_share": float(values.mean()),
            "mri_dominated": float((values > DOMINANCE).mean())}


def region_table(shares: Mapping[str, np.ndarray], regions: Mapping[str, np.ndarray | None]) -> list[dict]:
    """One row per (model, region): the summary numbers of ``summarise``."""
    return [{"model": model, "region": name, **summarise(share, mask)}
            for model, share in shares.items() for name, mask in regions.items()]


def table_csv(rows: list[dict]) -> str:
    """The region table as CSV text."""
    buffer = io.StringIO()
    fields = ["model", "region", "pixels", "mean_share", "mri_dominated"]
    writer = csv.DictWriter(buffer, fieldnames=fields, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def histogram(share: np.ndarray, mask: np.ndarray | None, bins: int = 40) -> tuple[np.ndarray, np.ndarray]:
    """Fraction of the region's pixels per MRI-share bin on [0, 1]: (fractions, bin edges)."""
    values = np.asarray(share)
    if mask is not None:
        values = values[mask]
    values = values[np.isfinite(values)]
    counts, edges = np.histogram(np.clip(values, 0.0, 1.0), bins=bins, range=(0.0, 1.0))
    return counts / max(values.size, 1), edges
