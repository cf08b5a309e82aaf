"""The three ways to compute whole-image saliency, each over all output pixels or a band of rows.

Coloured passes (``by_coloured_passes``): output pixels whose fields do not overlap
(``field.rows`` apart vertically or ``field.cols`` apart horizontally) have disjoint
input supports. One forward pass is kept; each of the rows x cols shifts (dy, dx) seeds
the backward pass with ones at p = (dy + i * rows, dx + j * cols), and the input
gradient at q is then dF(p)/d(q) for the one seeded p whose field holds q. Several
shifts run as one vmapped backward (``is_grads_batched``), in chunks bounded by a
memory budget. The shifts are visited coarse to fine, so early results already cover
the image on a sparse regular grid (the preview).

Crops (``by_crops``, the CPU default): every pixel's shrinking window replayed against
one kept forward pass. Full image (``by_full_image``): one backward pass per pixel.

Every path takes ``rows=(top, bottom)``: only output rows [top, bottom) are visited (the
others stay NaN, and only the visited rows' bands are kept), so that blocks of rows can be computed apart.

Banded storage: ``band_a[r, c, i, j] = dF(r, c)/da(r - up + i, c - left + j)``,
shape (H, W, rows, cols), zero outside the image.
"""
from __future__ import annotations

import inspect
import math
import threading
from collections.abc import Callable

import numpy as np
import torch
from torch import nn

from .backward import Backward, kept_graph
from .crops import crop_batches, window_geometry
from .field import Field, analyse
from .methods import Method
from .replay import ForwardRecord, record_forward
from .state import model_device, pinned
from .verification import verify_replay, verify_shrinking
from .windows import Unsupported

MAP_NAMES = ("guidance_a", "guidance_b", "influence_a", "influence_b", "mri_share")


class Cancelled(RuntimeError):
    """The computation was cancelled by its caller."""


def share(influence_a: np.ndarray, influence_b: np.ndarray) -> np.ndarray:
    """influence_a / (influence_a + influence_b); 0.5 where both are 0 (NaN stays NaN)."""
    total = influence_a + influence_b
    with np.errstate(invalid="ignore", divide="ignore"):
        out = np.where(total > 0, influence_a / np.where(total > 0, total, 1), 0.5)
    out[np.isnan(total)] = np.nan
    return out.astype(np.float32)


# ------------------------------------------------------------------ helpers
def _bit_reversed(n: int) -> list[int]:
    """0..n-1 ordered so that every prefix is spread out (van der Corput order)."""
    bits = max(1, math.ceil(math.log2(max(n, 2))))
    order = sorted(range(1 << bits), key=lambda i: int(f"{i:0{bits}b}"[::-1], 2))
    return [i for i in order if i < n]


def colour_order(rows: int, cols: int) -> list[tuple[int, int]]:
    """All shifts (dy, dx), coarse to fine: after k x k of them the seeds form a regular k-fold grid."""
    ry = {v: i for i, v in enumerate(_bit_reversed(rows))}
    rx = {v: i for i, v in enumerate(_bit_reversed(cols))}
    return sorted(((dy, dx) for dy in range(rows) for dx in range(cols)),
                  key=lambda s: (max(ry[s[0]], rx[s[1]]), ry[s[0]], rx[s[1]]))


def _is_cancelled(cancel) -> bool:
    if cancel is None:
        return False
    if isinstance(cancel, threading.Event) or hasattr(cancel, "is_set"):
        return bool(cancel.is_set())
    return bool(cancel())


def reporter(progress: Callable | None) -> Callable[[int, int, Callable[[], dict] | None], None]:
    """Call ``progress(done, total, preview)`` or ``progress(done, total)``, whichever it accepts."""
    if progress is None:
        return lambda done, total, preview: None
    try:
        params = inspect.signature(progress).parameters.values()
        positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
        three = len(positional) >= 3 or any(p.kind == p.VAR_POSITIONAL for p in params)
    except (TypeError, ValueError):
        three = True
    if three:
        return lambda done, total, preview: progress(done, total, preview() if preview else None)
    return lambda done, total, preview: progress(done, total)


# ------------------------------------------------------------------ the three paths
def _chunks(items: list, chunk: int, cancel, unit: str):
    """(start, items[start:start + chunk]) in order, checking for cancellation before each."""
    for start in range(0, len(items), chunk):
        if _is_cancelled(cancel):
            raise Cancelled(f"cancelled after {start} of {len(items)} {unit}")
        yield start, items[start:start + chunk]


def _preview(maps: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Copies of the partly filled maps (NaN where unknown) plus their MRI share."""
    out = {k: v.copy() for k, v in maps.items()}
    out["mri_share"] = share(out["influence_a"], out["influence_b"])
    return out


class _FlatResults:
    """The four maps (H * W,), NaN where not yet known, and the band rows that are kept, float32 on ``device``.

    ``band``: False (none), True (every pixel of the flat range ``visited``: (end - first, rows, cols)), or a
    list of (row, col) pixels (a block's checked pixels: (len(band), rows, cols), in that order).
    """

    def __init__(self, height: int, width: int, rows: int, cols: int, band, visited: tuple[int, int], device):
        self.shape, self.visited, self.window = (height, width), visited, (rows, cols)
        self.maps = {name: torch.full((height * width,), float("nan"), dtype=torch.float32, device=device)
                     for name in MAP_NAMES[:4]}
        self.slot = None  # band row of each flat pixel (-1: not kept), when only some pixels' rows are kept
        if band is True:
            kept = visited[1] - visited[0]
        elif band:
            kept = len(band)
            self.slot = torch.full((height * width,), -1, dtype=torch.long, device=device)
            self.slot[torch.tensor([r * width + c for r, c in band], device=device)] = torch.arange(kept, device=device)
        self.bands = [torch.zeros((kept, rows, cols), dtype=torch.float32, device=device)
                      for _ in "ab"] if band else None

    def put_band(self, which: int, pixels: torch.Tensor, values: torch.Tensor, rows=slice(None), cols=slice(None)):
        """Band rows of the flat ``pixels`` (where kept): ``values`` (len(pixels), h, w) into [rows, cols] of each."""
        band = self.bands[which]
        if self.slot is None:
            band[pixels - self.visited[0], rows, cols] = values.float()
            return
        slots = self.slot[pixels]
        kept = slots >= 0
        if bool(kept.any()):
            band[slots[kept], rows, cols] = values[kept].float()

    def preview(self) -> dict[str, np.ndarray]:
        return _preview({name: _host(m, *self.shape) for name, m in self.maps.items()})

    def host(self) -> tuple[dict[str, np.ndarray], list[np.ndarray] | None]:
        """(H x W maps, bands or None) as host arrays (no copy on the CPU): (rows visited, W, rows, cols) bands
        for every visited pixel, else (pixels, rows, cols)."""
        maps = {name: _host(m, *self.shape) for name, m in self.maps.items()}
        if not self.bands:
            return maps, None
        shape = (len(self.bands[0]),) if self.slot is not None else (-1, self.shape[1])
        return maps, [_host(band, *shape, *self.window) for band in self.bands]


class _ColourLayout:
    """Where each colour's seeds lie, precomputed once for one image and field (on the compute device).

    ``pixels``: the H * W flat pixel indices sorted by colour (position in ``colours``);
    ``colour``: the colour of each of them; ``starts[k]``: where colour k begins in that order.
    The seeds of colours [k0, k1) are then ``pixels[starts[k0]:starts[k1]]``, one contiguous slice.
    """

    def __init__(self, colours: list[tuple[int, int]], rows: int, cols: int, height: int, width: int, device):
        position = torch.empty((rows, cols), dtype=torch.long)
        for k, (dy, dx) in enumerate(colours):
            position[dy, dx] = k
        colour_map = position[torch.arange(height)[:, None] % rows, torch.arange(width)[None, :] % cols]
        flat = colour_map.flatten()
        self.pixels = torch.argsort(flat, stable=True)
        self.colour = flat[self.pixels]
        self.starts = torch.searchsorted(self.colour, torch.arange(len(colours) + 1)).tolist()
        self.colour_map = colour_map.to(device)
        self.pixels, self.colour = self.pixels.to(device), self.colour.to(device)

    def seeds(self, k0: int, k1: int, dtype) -> torch.Tensor:
        """(k1 - k0, H, W): ones at the seeds of colours k0..k1-1, one colour per slice."""
        wanted = torch.arange(k0, k1, device=self.colour_map.device)
        return (self.colour_map[None] == wanted[:, None, None]).to(dtype)

    def seeded(self, k0: int, k1: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(flat pixel index, its colour - k0) of every seed of colours k0..k1-1."""
        lo, hi = self.starts[k0], self.starts[k1]
        return self.pixels[lo:hi], self.colour[lo:hi] - k0


def _visited(rows: tuple[int, int] | None, height: int, width: int) -> tuple[int, int]:
    """The flat pixel indices [first, end) of output rows ``rows`` (all rows when None)."""
    top, bottom = rows if rows is not None else (0, height)
    if not 0 <= top < bottom <= height:
        raise ValueError(f"rows {rows} are not a band of the image's {height} rows")
    return top * width, bottom * width


def by_coloured_passes(model, ta, tb, f: Field, report, cancel, band, chunk, backward: Backward,
                       rows: tuple[int, int] | None = None):
    """The coloured passes; maps and bands are filled on the compute device, one gather per chunk
    (no host round trip per colour, which kept a GPU waiting), and copied to the host at the end.
    Only output rows ``rows`` (top, bottom) are seeded, when given."""
    height, width = ta.shape
    first, end = _visited(rows, height, width)
    results = _FlatResults(height, width, f.rows, f.cols, band, (first, end), ta.device)
    maps = results.maps
    colours = colour_order(min(f.rows, height), min(f.cols, width))  # larger shifts would seed nothing
    layout = _ColourLayout(colours, f.rows, f.cols, height, width, ta.device)

    for start, part in _chunks(colours, chunk, cancel, "colours"):
        seeds = layout.seeds(start, start + len(part), ta.dtype)
        seeds.view(len(part), -1)[:, :first] = 0
        seeds.view(len(part), -1)[:, end:] = 0
        grads = backward(seeds)
        pixels, k = layout.seeded(start, start + len(part))
        inside = (pixels >= first) & (pixels < end)
        pixels, k = pixels[inside], k[inside]
        r, c = pixels // width, pixels % width
        for which, (g, suffix) in enumerate(zip(grads, "ab", strict=True)):
            padded = torch.nn.functional.pad(g.detach(), (f.left, f.right, f.up, f.down))
            # windows[k, r, c, i, j] = padded[k, r + i, c + j] = dF(r, c)/d(r - up + i, c - left + j) for seed (r, c)
            windows = padded.unfold(1, f.rows, 1).unfold(2, f.cols, 1)
            patch = windows[k, r, c]  # (seeds, rows, cols), in the model's dtype
            maps[f"guidance_{suffix}"][pixels] = patch[:, f.up, f.left].float()
            maps[f"influence_{suffix}"][pixels] = patch.abs().sum(dim=(1, 2)).float()
            if results.bands:
                results.put_band(which, pixels, patch)
        report(start + len(part), len(colours), results.preview)
    return results.host()


#: Pixels per call of the crop path in ``by_crops`` (128 to 256 were fastest on the 2-core CPU).
CROP_PIXELS = 128


def by_crops(model, ta, tb, f: Field, report, cancel, band, record: ForwardRecord,
             rows: tuple[int, int] | None = None):
    """Every pixel's row by its shrinking window replayed against the kept forward pass (``crop_batches``).

    A coloured pass runs each layer's backward over the whole image, although near the output its
    gradient is zero except around the seeds; a shrinking window computes only the positions that
    reach its pixel, about a third of that work for a stack of equal convolutions, and the replay
    reads every convolution's output from ``record`` instead of computing it. Pixels whose window
    reaches no edge of the image are visited in the colour order, so the preview refines like the
    coloured one; then the others, grouped by the edges they reach and their window's size, so that
    each batch of one window geometry is as large as it can be (in colour order they would come
    one or two per batch, most of all in a block of a few rows). Only output rows ``rows`` (top, bottom) are
    visited, when given.
    """
    height, width = ta.shape
    first, end = _visited(rows, height, width)
    results = _FlatResults(height, width, f.rows, f.cols, band, (first, end), "cpu")
    maps = results.maps
    layout = _ColourLayout(colour_order(min(f.rows, height), min(f.cols, width)), f.rows, f.cols, height, width,
                           "cpu")
    order = [p for p in layout.pixels.tolist() if first <= p < end]

    geometry = {p: window_geometry(f.box(*divmod(p, width), height, width), height, width) for p in order}
    order = [p for p in order if not any(geometry[p][2])] + sorted((p for p in order if any(geometry[p][2])),
                                                                    key=geometry.__getitem__)

    for start, part in _chunks(order, CROP_PIXELS, cancel, "pixels"):
        pixels = [divmod(p, width) for p in part]
        for members, windows, ga, gb, _ in crop_batches(model, ta, tb, pixels, f, shrinking=True, record=record,
                                                        corner_programs=False):
            h, w = windows[0][1] - windows[0][0], windows[0][3] - windows[0][2]
            grads = [ta.new_zeros((len(members), h, w)) if g is None else g.detach()
                     for g in (ga, gb)]  # None: the output does not depend on that input
            # Per member: the window's place in the band row (i0, j0) and the pixel's in the window (pi, pj);
            # one batch shares them, except in images smaller than the field.
            places = [(t - (r - f.up), lf - (c - f.left), r - t, c - lf)
                      for (r, c), (t, _, lf, _) in zip((pixels[k] for k in members), windows, strict=True)]
            runs = [(slice(None), places[0])] if len(set(places)) == 1 else \
                [(slice(j, j + 1), place) for j, place in enumerate(places)]
            flat = torch.tensor([part[k] for k in members])
            for sub, (i0, j0, pi, pj) in runs:
                for which, (g, suffix) in enumerate(zip(grads, "ab", strict=True)):
                    maps[f"guidance_{suffix}"][flat[sub]] = g[sub, pi, pj].float()
                    maps[f"influence_{suffix}"][flat[sub]] = g[sub].abs().sum(dim=(1, 2)).float()
                    if results.bands:
                        results.put_band(which, flat[sub], g[sub], slice(i0, i0 + h), slice(j0, j0 + w))
        report(start + len(part), len(order), results.preview)
    return results.host()


def _host(values: torch.Tensor, *shape: int) -> np.ndarray:
    """A device tensor as a host array of ``shape`` (no copy on the CPU)."""
    return values.detach().reshape(shape).cpu().numpy()


def by_full_image(model, ta, tb, report, cancel, chunk, backward: Backward, rows: tuple[int, int] | None = None):
    """One backward pass per pixel (batched): exact for any model, H * W passes (those of output rows
    ``rows`` (top, bottom) only, when given)."""
    height, width = ta.shape
    first, end = _visited(rows, height, width)
    maps = {name: np.full((height, width), np.nan, np.float32) for name in MAP_NAMES[:4]}
    flat = [(r, c) for r, c in colour_order(height, width) if first <= r * width + c < end]

    def preview():
        return _preview(maps)

    for start, part in _chunks(flat, chunk, cancel, "pixels"):
        seeds = ta.new_zeros((len(part), height, width))
        rr = torch.tensor([p[0] for p in part])
        cc = torch.tensor([p[1] for p in part])
        seeds[torch.arange(len(part)), rr, cc] = 1
        for g, suffix in zip(backward(seeds), "ab", strict=True):
            g = g.detach().cpu()
            maps[f"guidance_{suffix}"][rr.numpy(), cc.numpy()] = g[torch.arange(len(part)), rr, cc].numpy()
            maps[f"influence_{suffix}"][rr.numpy(), cc.numpy()] = g.abs().sum(dim=(1, 2)).numpy()
        report(start + len(part), len(flat), preview)
    return maps


def crops_apply(model: nn.Module, height: int, width: int) -> bool:
    """Does the crop path (``by_crops``) serve this model and image shape? On the CPU, where its shrinking
    windows and their replay are verified exact (there it beats the coloured passes; docs/benchmarks.md).
    A GPU keeps the coloured passes (large convolutions suit it; the crops are not measured there)."""
    return (model_device(model).type == "cpu" and analyse(model).stride == 1
            and verify_shrinking(model, height, width) and verify_replay(model, height, width))


def compute(method: Method, model: nn.Module, ta: torch.Tensor, tb: torch.Tensor, f: Field, report, cancel,
            band, memory_budget: int | None, rows: tuple[int, int] | None = None):
    """Run one path (``Method.CROPS``, ``COLOURED`` or ``FULL_IMAGE``) on the (H, W) tensors ``ta``, ``tb``.

    ``band``: False (keep none), True (keep the band of every visited pixel) or a list of (row, col) pixels
    (keep theirs only). Returns (the method taken, maps {name: (H, W)}, the two bands or None: (rows visited,
    W, rows, cols), or (pixels, rows, cols) for a list, the fused image (H, W) float32). ``CROPS`` becomes
    ``COLOURED`` where the shrinking windows cannot follow the model; ``FULL_IMAGE`` keeps no band.
    """
    if method == Method.CROPS:
        try:
            record = record_forward(model, ta, tb)
        except Unsupported:  # the shrinking windows cannot follow this model: the coloured passes can
            method = Method.COLOURED
        else:
            fused = record.fused.detach().to("cpu", torch.float32).numpy().copy()
            with pinned(model):
                maps, bands = by_crops(model, record.inputs[0], record.inputs[1], f, report, cancel, band,
                                       record, rows)
            return method, maps, bands, fused
    backward, chunk, fused = kept_graph(model, ta, tb, memory_budget)
    if method == Method.COLOURED:
        maps, bands = by_coloured_passes(model, ta, tb, f, report, cancel, band, chunk, backward, rows)
        return method, maps, bands, fused
    return Method.FULL_IMAGE, by_full_image(model, ta, tb, report, cancel, chunk, backward, rows), None, fused
