"""Whole-image saliency in blocks of output rows, computed apart and merged exactly.

A block is the output rows [top, bottom) of one model on one pair. For a local model
(stride 1) those rows depend only on input rows [top - up, bottom + down]: a block runs
its path on that strip of the pair and visits only its own rows, so its memory and work
scale with its height, and blocks run in other processes or on other machines. A
non-local model's block runs on the whole image.

Each block checks the rows of its own edges (and of the image's corners it holds) against
full-image autograd in one backward pass (``compare_with_autograd``) before it is returned; a
block that disagrees is redone by one backward pass per pixel of its rows, and says why.
``merge_blocks`` joins blocks into the ``DenseJacobian`` that ``dense_jacobian`` returns.

Example (``model``, ``a``, ``b`` as for ``dense_jacobian``)::

    method, _, _ = dense_method(model, 256, 256)
    blocks = [dense_block(model, a, b, top, bottom, method) for top, bottom in split_rows(256, 4)]
    dense = merge_blocks(model, a, b, blocks)        # equal to dense_jacobian(model, a, b)
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from torch import nn

from .dense import METHODS
from .dense_paths import MAP_NAMES, compute, reporter
from .field import Field, analyse
from .methods import Method
from .reference import corner_pixels
from .result import DenseJacobian, unband
from .state import as_tensor
from .verification import compare_with_autograd


@dataclass
class DenseBlock:
    """Output rows [top, bottom) of a whole-image result; every map is (bottom - top, W) float32.

    ``band_a/_b``: (bottom - top, W, rows, cols) rows of the banded Jacobian, or None.
    ``field``: the model's field clipped to the whole image (as in ``DenseJacobian``).
    ``reason``: why the rows were redone by the full-image path, if they were.
    """

    top: int
    bottom: int
    guidance_a: np.ndarray
    guidance_b: np.ndarray
    influence_a: np.ndarray
    influence_b: np.ndarray
    fused: np.ndarray
    method: Method
    field: Field
    band_a: np.ndarray | None = None
    band_b: np.ndarray | None = None
    reason: str | None = None

    def __post_init__(self):
        self.method = Method(self.method)

    def row(self, row: int, col: int, height: int) -> tuple[np.ndarray, np.ndarray]:
        """dF(row, col)/da and /db as two H x W arrays, from the kept band (``row`` in the whole image)."""
        if not self.top <= row < self.bottom or self.band_a is None:
            raise IndexError(f"row {row} is not kept by this block (rows [{self.top}, {self.bottom}))")
        k = row - self.top
        return unband(self.band_a[k, col], self.band_b[k, col], self.field, row, col, height, self.fused.shape[1])

    def arrays(self) -> dict[str, np.ndarray]:
        """Its arrays by name (the bands only when kept)."""
        out = {name: getattr(self, name) for name in (*MAP_NAMES[:4], "fused")}
        if self.band_a is not None:
            out.update(band_a=self.band_a, band_b=self.band_b)
        return out


def split_rows(height: int, parts: int) -> list[tuple[int, int]]:
    """``parts`` bands of rows (top, bottom) covering [0, height), heights differing by at most one.

    >>> split_rows(10, 3)
    [(0, 3), (3, 7), (7, 10)]
    """
    parts = max(1, min(int(parts), height))
    edges = [round(k * height / parts) for k in range(parts + 1)]
    return list(zip(edges[:-1], edges[1:], strict=True))


def strip_of(field: Field, top: int, bottom: int, height: int, method: Method) -> tuple[int, int]:
    """The input rows [start, end) that output rows [top, bottom) depend on (all rows unless the
    model is local with stride 1 and the method uses the field).

    >>> strip_of(Field(2, 3, 1, 1), 10, 20, 64, Method.CROPS)
    (8, 23)
    """
    if method == Method.FULL_IMAGE or not field.local or field.stride != 1:
        return 0, height
    return max(0, top - field.up), min(height, bottom + field.down)


def dense_block(model: nn.Module, a: np.ndarray, b: np.ndarray, top: int, bottom: int, method: Method,
                progress: Callable | None = None, cancel=None, keep_band: bool = True,
                memory_budget: int | None = None) -> DenseBlock:
    """Output rows [top, bottom) of ``dense_jacobian(model, a, b, method=method)``, checked.

    Args:
        a, b: the whole H x W pair in [0, 1].
        method: ``Method.CROPS``, ``COLOURED`` or ``FULL_IMAGE``, chosen for the whole image (``dense_method``).
        progress: ``progress(done, total, preview)`` with preview maps (bottom - top, W), NaN where
            not yet known; cancel, memory_budget: as in ``dense_jacobian``.
        keep_band: keep the block's rows of the banded Jacobian (else only the checked pixels' are computed).
    """
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; use one of {', '.join(repr(m.value) for m in METHODS)}")
    method = Method(method)
    ta, tb = as_tensor(a, "a", model), as_tensor(b, "b", model)
    if ta.shape != tb.shape:
        raise ValueError(f"a and b differ in shape: {tuple(ta.shape)} vs {tuple(tb.shape)}")
    height, width = ta.shape
    if not 0 <= top < bottom <= height:
        raise ValueError(f"rows [{top}, {bottom}) are not a band of the image's {height} rows")
    field = analyse(model)
    field = field.clipped(height, width) if method != Method.FULL_IMAGE else field
    start, end = strip_of(field, top, bottom, height, method)
    # One row more on each side than the rows depend on: a window of an own row then reaches an edge of the
    # strip only where it reaches an edge of the image, so it takes the same window geometry (and batch)
    # as in the whole image.
    start, end = max(0, start - 1), min(height, end + 1)
    keep = slice(top - start, bottom - start)
    report = reporter(progress)

    def report_own_rows(done: int, total: int, preview: Callable[[], dict] | None) -> None:
        report(done, total, None if preview is None else lambda: {k: v[keep] for k, v in preview().items()})

    checked = block_pixels(top, bottom, height, width)
    # The band of every own row when it is kept, else only that of the pixels checked below: a band is the
    # largest thing a block computes, and the strip's extra rows are never kept.
    taken, maps, bands, fused = compute(method, model, ta[start:end], tb[start:end], field, report_own_rows,
                                        cancel, True if keep_band else [(r - start, c) for r, c in checked],
                                        memory_budget, (keep.start, keep.stop))
    own_bands = bands if bands and keep_band else (None, None)
    block = DenseBlock(top, bottom, **{name: values[keep].copy() for name, values in maps.items()},
                       fused=fused[keep].copy(), method=taken, field=field, band_a=own_bands[0], band_b=own_bands[1])
    if bands:
        kept = dict(zip(checked, zip(*bands, strict=True), strict=True)) if not keep_band else None

        def row(r: int, c: int) -> tuple[np.ndarray, np.ndarray]:
            if kept is None:
                return block.row(r, c, height)
            return unband(*kept[(r, c)], field, r, c, height, width)

        mismatch = compare_with_autograd(model, ta, tb, checked, row, taken)
        if mismatch is not None:  # never serve a wrong answer: these rows the slow, exact way
            block = dense_block(model, a, b, top, bottom, Method.FULL_IMAGE, progress, cancel, keep_band, memory_budget)
            block.reason = mismatch
    return block


def block_pixels(top: int, bottom: int, height: int, width: int) -> list[tuple[int, int]]:
    """The pixels a block of rows [top, bottom) checks: its edge rows' corners and middles, and the image's
    corners and centre that it holds."""
    edges = [(row, col) for row in (top, bottom - 1) for col in (0, width // 2, width - 1)]
    inside = [(r, c) for r, c in corner_pixels(height, width, extra=0) if top <= r < bottom]
    return sorted(set(edges) | set(inside))


def merge_blocks(model: nn.Module, a: np.ndarray, b: np.ndarray, blocks: list[DenseBlock]) -> DenseJacobian:
    """The ``DenseJacobian`` of blocks that cover the image's rows exactly once (any order).

    Where a block was redone by the full-image path, the result is ``Method.FULL_IMAGE`` without a band,
    and its ``reason`` says why. Raises ValueError when the blocks do not tile the image or were
    computed with different fields.
    """
    height, width = np.shape(a)
    blocks = sorted(blocks, key=lambda block: block.top)
    edges = [(block.top, block.bottom) for block in blocks]
    if not blocks or blocks[0].top != 0 or blocks[-1].bottom != height or any(
            prev[1] != nxt[0] for prev, nxt in zip(edges, edges[1:], strict=False)):
        raise ValueError(f"blocks {edges} do not cover rows [0, {height}) exactly once")
    if any(block.fused.shape[1] != width for block in blocks):
        raise ValueError(f"blocks are not {width} pixels wide")
    methods = {block.method for block in blocks}
    redone = [block for block in blocks if block.method == Method.FULL_IMAGE]
    if not redone and len(methods) > 1:
        raise ValueError("blocks computed by different methods cannot be merged")
    method = Method.FULL_IMAGE if redone else methods.pop()
    fields = {block.field for block in blocks if block.method == method}
    if len(fields) != 1:
        raise ValueError("blocks computed with different fields cannot be merged")
    names = [*MAP_NAMES[:4], "fused"]
    if not redone and all(block.band_a is not None for block in blocks):
        names += ["band_a", "band_b"]
    joined = {name: np.concatenate([getattr(block, name) for block in blocks]) for name in names}
    return DenseJacobian(**joined, method=method, field=fields.pop(), model=model,
                         inputs=(np.asarray(a), np.asarray(b)),
                         reason=next((block.reason for block in redone if block.reason), None))
