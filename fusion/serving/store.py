"""The disk store of the saliency service: pairs, probed fields, plans, fused images, dense results
and blocks of dense rows, in a diskcache ``Cache`` shared by every process on the machine.

Every value is a checked blob (``keys.pack``) under a content-hash key (``keys.cache_key``): an
entry that fails its checksum is deleted and reads as missing, so the caller recomputes it, never
serves it. diskcache writes a value's file completely before it publishes the key, so readers see
nothing or a whole entry. The cache must be on a local disk (SQLite is not safe on NFS). Plans are
stored and read back as ``StoredPlan`` values; installing them in a model's memo is the planner's job.
"""
from __future__ import annotations

import os
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from ..errors import InvalidInput
from ..io import Pair
from ..processes import renewing
from ..saliency.blocks import DenseBlock
from ..saliency.field import Field
from ..saliency.result import DenseJacobian
from .keys import cache_key, pack, pair_hash, unpack
from .memory import LRU

#: A lease of ``DiskStore.one_at_a_time`` lasts this long unless its holder renews it.
LEASE_S = 15.0


@dataclass(frozen=True)
class StoredPlan:
    """A model's verdicts at one image size: the crop path verified (``ok``, else ``reason``), the shrinking
    windows and their replay verified, and by hovers at once (1 or 2) whether the replay is faster."""

    ok: bool
    reason: str | None
    shrinking: bool = False
    replay: bool = False
    replay_faster: dict[int, bool] = field(default_factory=dict)

    @classmethod
    def from_header(cls, header: dict) -> StoredPlan:
        faster = header.get("replay_faster")
        if isinstance(faster, bool):  # written before the timing per number of hovers at once
            faster = {2: faster}
        return cls(bool(header["ok"]), header["reason"], bool(header.get("shrinking")), bool(header.get("replay")),
                   {int(k): bool(v) for k, v in (faster or {}).items()})


class DiskStore:
    """Typed reads and writes of the shared disk cache at ``cache_dir`` (evicting least recently used
    entries beyond ``size_limit_bytes``), with in-memory copies of recent pairs."""

    def __init__(self, cache_dir: str | os.PathLike, size_limit_bytes: int):
        self.cache_dir, self.size_limit_bytes = Path(cache_dir), int(size_limit_bytes)
        self._cache, self._pid = None, None
        self._pairs = LRU(8)  # pair id -> (a, b)
        self._colours = LRU(8)  # pair id -> (pet_chroma or None, pet_range)

    @property
    def cache(self):
        """The diskcache Cache, (re)opened in this process (connections must not cross a fork)."""
        import diskcache

        if self._cache is None or self._pid != os.getpid():
            self.cache_dir.mkdir(parents=True, exist_ok=True)
            self._cache = diskcache.Cache(str(self.cache_dir), size_limit=self.size_limit_bytes,
                                          eviction_policy="least-recently-used")
            self._pid = os.getpid()
        return self._cache

    def close(self) -> None:
        """Release the cache's connections (reopened at the next use)."""
        if self._cache is not None:
            self._cache.close()
            self._cache = None

    def forget_memory(self) -> None:
        """Drop the in-memory copies of pairs: the next reads come from the disk."""
        self._pairs.clear()
        self._colours.clear()

    def load(self, key: str):
        """(arrays, header) stored under key, or None; a damaged entry is deleted."""
        blob = self.cache.get(key)
        if blob is None:
            return None
        try:
            return unpack(blob)
        except (ValueError, OSError, KeyError):
            self.cache.delete(key)
            return None

    def save(self, key: str, arrays: dict[str, np.ndarray], header: dict) -> None:
        self.cache.set(key, pack(arrays, header))

    # -------------------------------------------------------------- pairs
    def put_pair(self, pair: Pair) -> str:
        """Store a validated pair (``fusion.io.check_colour_pair``); returns its id (``pair_hash``)."""
        a, b = pair
        pair_id = pair_hash(a, b, pair.pet_chroma, pair.pet_range)
        self._pairs.put(pair_id, (a, b))
        self._colours.put(pair_id, (pair.pet_chroma, pair.pet_range))
        key = cache_key("pair", pair_id)
        if self.load(key) is None:
            arrays, header = {"a": a, "b": b}, {"pair_id": pair_id}
            if pair.is_colour:
                arrays["pet_chroma"], header["pet_range"] = pair.pet_chroma, list(pair.pet_range)
            self.save(key, arrays, header)
        return pair_id

    def get_pair(self, pair_id: str) -> tuple[np.ndarray, np.ndarray]:
        """The two H x W float32 images of a stored pair; raises InvalidInput for an unknown id."""
        hit = self._pairs.get(pair_id)
        return hit if hit is not None else self._load_pair(pair_id)[0]

    def pair_colour(self, pair_id: str) -> tuple[np.ndarray | None, tuple[float, float]]:
        """(pet_chroma (H, W, 2) or None for a grey pair, pet_range); raises InvalidInput for an unknown id."""
        hit = self._colours.get(pair_id)
        return hit if hit is not None else self._load_pair(pair_id)[1]

    def colour_pair(self, pair_id: str) -> Pair:
        """A stored pair with its colour (``fusion.io.Pair``); raises InvalidInput for an unknown id."""
        a, b = self.get_pair(pair_id)
        chroma, value_range = self.pair_colour(pair_id)
        return Pair(a, b) if chroma is None else Pair(a, b, chroma, value_range)

    def _load_pair(self, pair_id: str) -> tuple[tuple[np.ndarray, np.ndarray], tuple]:
        entry = self.load(cache_key("pair", pair_id)) if isinstance(pair_id, str) else None
        if entry is None:
            raise InvalidInput(f"unknown or expired image pair {pair_id!r}: load or upload the images again")
        arrays, header = entry
        lo, hi = header.get("pet_range", (0.0, 1.0))
        return (self._pairs.put(pair_id, (arrays["a"], arrays["b"])),
                self._colours.put(pair_id, (arrays.get("pet_chroma"), (float(lo), float(hi)))))

    # -------------------------------------------------------------- fields and plans
    def field(self, weights: str) -> Field | None:
        """The probed field of the model with these weights, if stored."""
        entry = self.load(cache_key("field", weights))
        return None if entry is None else Field(**entry[1]["field"])

    def put_field(self, weights: str, field: Field) -> None:
        self.save(cache_key("field", weights), {}, {"field": field.__dict__})

    def plan(self, weights: str, height: int, width: int) -> StoredPlan | None:
        """The stored verdicts of the model with these weights at this image size, if any."""
        entry = self.load(cache_key("verdict", weights, f"{height}x{width}"))
        return None if entry is None else StoredPlan.from_header(entry[1])

    def put_plan(self, weights: str, height: int, width: int, plan: StoredPlan) -> None:
        self.save(cache_key("verdict", weights, f"{height}x{width}"), {}, asdict(plan))

    def one_at_a_time(self, lease: tuple, known, compute, seconds: float = LEASE_S):
        """``known()`` once it is not None; meanwhile, ``compute()`` by the one process that holds the lease.

        The lease is an entry of the cache that expires after ``seconds`` unless renewed: its holder renews
        it every third of that while ``compute()`` runs, however long that takes, so a holder that is
        killed delays the others by at most ``seconds``.
        """
        key, owner = cache_key("lease", *lease), f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
        while True:
            found = known()
            if found is not None:
                return found
            if self.cache.add(key, owner, expire=seconds):
                try:
                    with renewing(lambda: self._renew(key, owner, seconds), seconds / 3, "lease-renewal"):
                        return compute()
                finally:
                    if self.cache.get(key) == owner:
                        self.cache.delete(key)
            time.sleep(0.2)

    def _renew(self, key: str, owner: str, seconds: float) -> bool:
        if self.cache.get(key) != owner:  # expired meanwhile (this process was stopped) and taken by another
            return False
        return bool(self.cache.touch(key, expire=seconds))

    # -------------------------------------------------------------- fused images
    def fused(self, weights: str, pair_id: str) -> np.ndarray | None:
        entry = self.load(cache_key("fused", weights, pair_id))
        return None if entry is None else entry[0]["fused"]

    def put_fused(self, weights: str, pair_id: str, fused: np.ndarray, model: str) -> None:
        self.save(cache_key("fused", weights, pair_id), {"fused": fused}, {"model": model, "pair_id": pair_id})

    # -------------------------------------------------------------- dense results and their blocks
    def has_dense(self, weights: str, pair_id: str) -> bool:
        return cache_key("dense", weights, pair_id) in self.cache

    def dense(self, weights: str, pair_id: str, model, inputs: Pair) -> DenseJacobian | None:
        """The stored dense result of the model (``model``, these weights) on the pair ``inputs``, if any."""
        entry = self.load(cache_key("dense", weights, pair_id))
        if entry is None:
            return None
        arrays, header = entry
        return DenseJacobian(
            guidance_a=arrays["guidance_a"], guidance_b=arrays["guidance_b"],
            influence_a=arrays["influence_a"], influence_b=arrays["influence_b"], fused=arrays["fused"],
            method=header["method"], field=Field(**header["field"]), band_a=arrays.get("band_a"),
            band_b=arrays.get("band_b"), reason=header["reason"], meta=header["meta"], model=model, inputs=inputs)

    def put_dense(self, weights: str, pair_id: str, dense: DenseJacobian, max_band_bytes: int) -> None:
        """Store the maps of a dense result, and its banded Jacobian where both inputs' fit ``max_band_bytes``."""
        arrays = {**{k: getattr(dense, k) for k in ("guidance_a", "guidance_b", "influence_a", "influence_b")},
                  "fused": dense.fused}
        if dense.band_a is not None and dense.band_a.nbytes * 2 <= max_band_bytes:
            arrays.update(band_a=dense.band_a, band_b=dense.band_b)
        header = {"method": dense.method, "reason": dense.reason, "field": dense.field.__dict__, "meta": dense.meta}
        self.save(cache_key("dense", weights, pair_id), arrays, header)

    @staticmethod
    def _block_key(weights: str, pair_id: str, top: int, bottom: int) -> str:
        return cache_key("block", weights, pair_id, f"{top}-{bottom}")

    def has_block(self, weights: str, pair_id: str, top: int, bottom: int) -> bool:
        return self._block_key(weights, pair_id, top, bottom) in self.cache

    def block(self, weights: str, pair_id: str, top: int, bottom: int) -> DenseBlock | None:
        entry = self.load(self._block_key(weights, pair_id, top, bottom))
        if entry is None:
            return None
        arrays, header = entry
        return DenseBlock(top, bottom, **arrays, method=header["method"], field=Field(**header["field"]),
                          reason=header["reason"])

    def put_block(self, weights: str, pair_id: str, block: DenseBlock) -> None:
        self.save(self._block_key(weights, pair_id, block.top, block.bottom), block.arrays(),
                  {"top": block.top, "bottom": block.bottom, "method": block.method, "field": block.field.__dict__,
                   "reason": block.reason})

    def delete_block(self, weights: str, pair_id: str, top: int, bottom: int) -> None:
        self.cache.delete(self._block_key(weights, pair_id, top, bottom))
