"""Whole-image (dense) results of the saliency service: computed once, stored, served from memory or disk.

``WholeImages`` computes a model's dense Jacobian on a stored pair by its plan (``dense_jacobian``), or
in blocks of output rows that other processes compute (``dense_rows``, then ``merge_rows``; see
``fusion.fanout``), and stores the result in the disk store, where every process finds it.
"""
from __future__ import annotations

import math

from ..saliency.blocks import dense_block, merge_blocks
from ..saliency.dense import dense_jacobian, dense_method
from ..saliency.methods import Method
from ..saliency.result import DenseJacobian
from .hover import HoverEngine
from .keys import METHOD_VERSION, SAME_NUMBERS_AS
from .memory import LRU


class WholeImages:
    """Dense results of the models of ``hovers.planner`` on the pairs of ``hovers.store``.

    ``max_band_bytes``: largest banded Jacobian (both inputs) stored with a result; ``computed``: counts
    of work done here ("dense" is counted); ``memory``: recent results in this process.
    """

    def __init__(self, hovers: HoverEngine, max_band_bytes: int, computed: dict):
        self.hovers, self.store, self.planner = hovers, hovers.store, hovers.planner
        self.max_band_bytes, self.computed = int(max_band_bytes), computed
        self.memory = LRU(4)  # (weights hash, pair id) -> DenseJacobian

    def _meta(self, name: str, pair_id: str) -> dict:
        return {"model": name, "weights_hash": self.planner.weights_hash(name), "pair_id": pair_id,
                "method_version": METHOD_VERSION}

    def cached(self, name: str, pair_id: str) -> DenseJacobian | None:
        """The dense result if it is in memory or on disk, else None."""
        key = (self.planner.weights_hash(name), pair_id)
        hit = self.memory.get(key)
        if hit is not None:
            return hit
        dense = self.store.dense(*key, self.planner.model(name), self.store.colour_pair(pair_id))
        return None if dense is None else self.memory.put(key, dense)

    def in_memory(self, name: str, pair_id: str) -> DenseJacobian | None:
        """The dense result in this process's memory, if it is there (no disk read)."""
        return self.memory.get((self.planner.weights_hash(name), pair_id))

    def has(self, name: str, pair_id: str) -> bool:
        weights = self.planner.weights_hash(name)
        return (weights, pair_id) in self.memory or self.store.has_dense(weights, pair_id)

    def compute(self, name: str, pair_id: str, progress=None, cancel=None) -> DenseJacobian:
        """The dense result, computed here unless it is stored (see ``SaliencyService.dense``)."""
        hit = self.cached(name, pair_id)
        if hit is not None:
            return hit
        a, b = self.store.get_pair(pair_id)
        method, _, reason = self.planner.plan(name, *a.shape)
        dense = dense_jacobian(self.planner.model(name), a, b, progress=progress, cancel=cancel,
                               method="auto" if method == Method.CROPS else Method.FULL_IMAGE)
        dense.reason = dense.reason if method == Method.CROPS else reason
        self.computed["dense"] += 1
        dense.meta = self._meta(name, pair_id)
        return self.put(name, pair_id, dense)

    def method(self, name: str, pair_id: str) -> Method:
        """The path of the model's dense result on this pair: ``Method.CROPS``, ``COLOURED`` or ``FULL_IMAGE``."""
        a, _ = self.store.get_pair(pair_id)
        if self.planner.plan(name, *a.shape).method != Method.CROPS:
            return Method.FULL_IMAGE
        return dense_method(self.planner.model(name), *a.shape)[0]

    def has_block(self, name: str, pair_id: str, top: int, bottom: int) -> bool:
        return self.store.has_block(self.planner.weights_hash(name), pair_id, top, bottom) or self.has(name, pair_id)

    def rows(self, name: str, pair_id: str, top: int, bottom: int, progress=None, cancel=None) -> None:
        """Compute output rows [top, bottom) and store them (see ``SaliencyService.dense_rows``)."""
        if self.has_block(name, pair_id, top, bottom):
            return
        a, b = self.store.get_pair(pair_id)
        keep_band = self.band_bytes(name, *a.shape) <= self.max_band_bytes
        block = dense_block(self.planner.model(name), a, b, top, bottom, self.method(name, pair_id), progress,
                            cancel, keep_band)
        self.store.put_block(self.planner.weights_hash(name), pair_id, block)

    def band_bytes(self, name: str, height: int, width: int) -> int:
        """Bytes of the model's banded Jacobian (both inputs, float32) at this size."""
        field = self.planner.field(name).clipped(height, width)
        return 2 * 4 * height * width * field.rows * field.cols

    def cost(self, name: str, height: int, width: int) -> float:
        """Relative work of the model's dense result at this size (pixels x field area)."""
        field = self.planner.field(name).clipped(height, width)
        return float(height * width * field.rows * field.cols) if field.local else float(height * width) ** 2

    def peak_bytes(self, name: str, height: int, width: int) -> float:
        """Estimated peak memory of the dense result in one piece: kept activations and banded Jacobian."""
        record = self.hovers.record_bytes(name, height, width)
        return (record if math.isfinite(record) else 0.0) + self.band_bytes(name, height, width)

    def merge(self, name: str, pair_id: str, bounds: list[tuple[int, int]]) -> DenseJacobian:
        """The dense result from its stored blocks (see ``SaliencyService.merge_rows``)."""
        if self.has(name, pair_id):
            return self.cached(name, pair_id)
        weights, blocks = self.planner.weights_hash(name), []
        for top, bottom in bounds:
            block = self.store.block(weights, pair_id, top, bottom)
            if block is None:
                raise KeyError(f"rows {top}-{bottom} of {name} on pair {pair_id[:8]} are not in the cache")
            blocks.append(block)
        a, b = self.store.get_pair(pair_id)
        dense = merge_blocks(self.planner.model(name), a, b, blocks)
        del blocks  # joined now: at most two copies of the band (joined, and packed by ``put``) at once
        if dense.method == Method.FULL_IMAGE and dense.reason is None:
            dense.reason = self.planner.plan(name, *a.shape).reason
        self.computed["dense"] += 1
        dense.meta = self._meta(name, pair_id)
        dense = self.put(name, pair_id, dense)
        for top, bottom in bounds:
            self.store.delete_block(weights, pair_id, top, bottom)
        return dense

    def put(self, name: str, pair_id: str, dense: DenseJacobian) -> DenseJacobian:
        """Store a dense result as model ``name``'s on the pair (see ``SaliencyService.put_dense``)."""
        a, _ = self.store.get_pair(pair_id)
        meta, ours = dense.meta or {}, self.planner.weights_hash(name)
        theirs = meta.get("weights_hash") or ""
        if theirs != ours:
            raise ValueError(f"it was computed with other weights of {name} (weights hash "
                             f"{theirs[:12] or 'not recorded'}, the loaded model's {ours[:12]})")
        if meta.get("pair_id") != pair_id or dense.shape != a.shape:
            raise ValueError("it was computed on another image pair")
        if meta.get("method_version") not in (METHOD_VERSION, *SAME_NUMBERS_AS):
            raise ValueError(f"it was computed by method version {meta.get('method_version') or '?'}; "
                             f"this library is at version {METHOD_VERSION}")
        dense.meta = {**meta, "model": name, "method_version": METHOD_VERSION}
        dense.model, dense.inputs = self.planner.model(name), self.store.colour_pair(pair_id)  # HDF5 keeps colour
        self.store.put_dense(ours, pair_id, dense, self.max_band_bytes)
        return self.memory.put((ours, pair_id), dense)
