"""The cached saliency facade shared by the dashboard and the command line (``SaliencyService``).

It composes the parts of ``fusion.serving``: the disk store (``DiskStore``: pairs, plans, fused images,
dense results), the models and their plans (``Planner``), the hover engine (``HoverEngine``: kept
activations, window programs), the hover worker processes (``HoverProcesses``) and the whole-image
results (``WholeImages``), and keeps recent answers in memory. Settings not given as arguments come
from ``fusion.settings`` (read and checked when the service is made).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..checkpoints import read_card
from ..devices import pick_device
from ..io import Pair, check_colour_pair
from ..saliency.methods import Method
from ..saliency.pixel import PixelJacobian
from ..saliency.reference import run
from ..saliency.result import DenseJacobian
from ..saliency.state import model_dtype
from ..settings import Settings
from .hover import HoverEngine
from .hover_processes import HoverProcesses
from .hover_requests import HOVER_WORKERS, HoverRequests
from .memory import LRU
from .planner import Planner
from .store import DiskStore
from .whole import WholeImages


class SaliencyService:
    """Cached saliency for the dashboard and the CLI.

    Args:
        cache_dir: directory of the disk cache (default: ``Settings.cache_dir``, $FUSION_CACHE_DIR).
        size_limit_bytes: the disk cache's size limit (least recently used entries are evicted).
        device: torch device the models run on ("auto": the GPU if there is one, else the CPU).
        checkpoint: passed to ``fusion.create_model`` ("default": the bundled weights; None: fresh).
        max_band_bytes: largest banded Jacobian (both inputs) stored with a dense result
            (default: a quarter of the size limit); larger ones keep only the maps.
        hover_memory_bytes: memory for kept full-image forward activations, per process (default:
            $FUSION_HOVER_MEMORY_MB; 0: none). A hover on a pair whose activations are kept runs only
            the backward half; the least recently used are dropped first.
        replay: when hovers replay kept activations: "auto", "always" or "never" (``HoverEngine``).
        hover_processes: worker processes that compute the hovers of several models at once (CPU
            only; default: ``Settings.hover_workers()``, 0 for the library: threads).
        planning: where a model's one-off work at a new image size runs: "inline", "background" or
            "elsewhere" (``fusion.serving.planner``).
        hover_threads: threads hovering several models at once in this process (without processes).
        settings: the ``fusion.settings.Settings`` (default: read from the environment now).

    Public parts: ``store`` (``DiskStore``), ``planner`` (``Planner``), ``hovers`` (``HoverEngine``),
    ``requests`` (``HoverRequests``: hovers of several models), ``whole`` (``WholeImages``),
    ``hover_pool`` (``HoverProcesses`` or None), ``hover_seconds`` ({(model, H, W): moving average
    of a hover's seconds}, which orders the models of a hover), ``computed`` (how many times each
    kind of result was computed here, not served from a cache).
    """

    def __init__(self, cache_dir=None, size_limit_bytes: int = 2**31, device: str = "cpu",
                 checkpoint="default", max_band_bytes: int | None = None, hover_memory_bytes: int | None = None,
                 replay: str = "auto", hover_processes: int | None = None, planning: str = "inline",
                 hover_threads: int = HOVER_WORKERS, settings: Settings | None = None):
        settings = settings or Settings.from_env()
        self.store = DiskStore(Path(cache_dir) if cache_dir is not None else settings.cache_dir, size_limit_bytes)
        self.cache_dir, self.size_limit_bytes = self.store.cache_dir, self.store.size_limit_bytes
        self.device = pick_device(device)
        self.checkpoint, self.planning = checkpoint, planning
        self.planner = Planner(self.store, self.device, checkpoint, planning)
        self.computed: dict[str, int] = {"fuse": 0, "pixel": 0, "dense": 0, "record": 0}
        memory = settings.hover_memory_bytes if hover_memory_bytes is None else int(hover_memory_bytes)
        self.hovers = HoverEngine(self.store, self.planner, memory, replay, self.computed)
        self.max_band_bytes = self.size_limit_bytes // 4 if max_band_bytes is None else int(max_band_bytes)
        self.whole = WholeImages(self.hovers, self.max_band_bytes, self.computed)
        self._colour_fused = LRU(16)  # (weights hash, pair id) -> (H, W, 3) RGB
        processes = settings.hover_workers() if hover_processes is None else int(hover_processes)
        pool = None
        if processes > 0 and self.device.type == "cpu":
            pool = HoverProcesses(processes, {
                "cache_dir": str(self.cache_dir), "size_limit_bytes": self.size_limit_bytes,
                "checkpoint": None if checkpoint is None else str(checkpoint), "hover_memory_bytes": memory,
                "replay": replay, "planning": "inline" if planning == "inline" else "elsewhere"})
        self.requests = HoverRequests(self.hovers, self.whole, pool, hover_threads)

    @property
    def replay(self) -> str:
        return self.hovers.replay

    @replay.setter
    def replay(self, value: str) -> None:
        self.hovers.replay = value

    @property
    def cache(self):
        """The diskcache Cache, (re)opened in this process (connections must not cross a fork)."""
        return self.store.cache

    @property
    def hover_pool(self) -> HoverProcesses | None:
        """The hover worker processes (None without them, or once closed)."""
        return self.requests.pool

    @property
    def hover_seconds(self) -> dict[tuple, float]:
        """{(model, H, W): moving average of a hover's seconds here}, which orders the models of a hover."""
        return self.requests.seconds

    @property
    def local_only(self) -> frozenset[str]:
        """Models whose hovers the worker processes cannot answer (other weights): computed here."""
        return frozenset(self.requests.local_only)

    def close(self) -> None:
        """Release the disk cache (reopened at the next use) and stop the hover worker processes for good
        (later hovers run in threads)."""
        pool, self.requests.pool = self.requests.pool, None
        if pool is not None:
            pool.close(final=True)
        self.planner.close()
        self.store.close()

    def clear_memory(self) -> None:
        """Forget this process's copies of pairs, recent hovers, fused colour images and dense results:
        the next reads come from the disk cache (kept activations and plans stay)."""
        self.store.forget_memory()
        for memory in (self.requests.memory, self._colour_fused, self.whole.memory):
            memory.clear()

    # -------------------------------------------------------------- pairs
    def put_pair(self, a, b, pet_chroma=None, pet_range=None) -> str:
        """Validate (``fusion.io.check_colour_pair``) and store a pair; returns its id (hex content hash).

        A colour PET: ``b`` its scaled Y (H, W), ``pet_chroma`` (H, W, 2) Cb/Cr and ``pet_range`` (lo, hi)
        as in ``fusion.io.Pair`` (or ``b`` an (H, W, 3) RGB array); the id hashes the colour too.
        """
        return self.store.put_pair(check_colour_pair(a, b, pet_chroma, pet_range))

    def get_pair(self, pair_id: str) -> tuple[np.ndarray, np.ndarray]:
        """The two H x W float32 images of a stored pair; raises InvalidInput for an unknown id."""
        return self.store.get_pair(pair_id)

    def pair_colour(self, pair_id: str) -> tuple[np.ndarray, tuple[float, float]] | None:
        """(pet_chroma (H, W, 2) float32, pet_range (lo, hi)) of a stored colour pair, None for a grey one;
        raises InvalidInput for an unknown id."""
        colour = self.store.pair_colour(pair_id)
        return None if colour[0] is None else colour

    def colour_pair(self, pair_id: str) -> Pair:
        """A stored pair with its colour (``fusion.io.Pair``); raises InvalidInput for an unknown id."""
        return self.store.colour_pair(pair_id)

    def pet_colour(self, pair_id: str) -> np.ndarray:
        """The PET input as (H, W, 3) float32 RGB in [0, 1] (a grey PET: three equal channels)."""
        return self.colour_pair(pair_id).colour_pet()

    # -------------------------------------------------------------- models
    def model(self, name: str) -> nn.Module:
        """The model ``name`` (``fusion.create_model``), built once per process."""
        return self.planner.model(name)

    def weights_hash(self, name: str) -> str:
        return self.planner.weights_hash(name)

    def use_model(self, name: str, model: nn.Module, weights: str | None = None) -> None:
        """Serve ``model`` under ``name`` here (``Planner.use_model``); its hovers are computed in this process."""
        self.planner.use_model(name, model, weights)

    def model_info(self, name: str) -> dict:
        """{"name", "receptive_field", "field", "method", "reason", "checkpoint", "card", "weights_hash"}.

        ``receptive_field``: side in pixels (None for a non-local model); ``field``: its
        reach {"up", "down", "left", "right", "stride", "local"}; ``method``: the hover path,
        ``Method.CROPS`` for local models (verified per image shape at first use) or ``FULL_IMAGE``
        ("planning" while the field is probed).
        """
        model = self.model(name)
        field = self.planner.field_soon(name)
        path = getattr(model, "checkpoint_path", None)
        info = {"name": name, "checkpoint": path, "card": read_card(path) if path else None,
                "weights_hash": self.weights_hash(name)}
        if field is None:  # still being probed in the background
            return {**info, "receptive_field": None, "field": None, "method": "planning",
                    "reason": "the receptive field is being probed in the background"}
        return {**info,
                "receptive_field": field.size if field.local else None,
                "field": {k: getattr(field, k) for k in ("up", "down", "left", "right", "stride", "local")},
                "method": Method.CROPS if field.local else Method.FULL_IMAGE,
                "reason": field.reason}

    def plan_ahead(self, names, shapes) -> list:
        """Probe ``names`` and plan them at every (height, width) of ``shapes`` in the background thread (a
        server's start: the registered models at the bundled samples' size). Returns the jobs' Futures."""
        names = [names] if isinstance(names, str) else list(names)
        futures = [self.planner.probe_later(n) for n in names]
        for height, width in shapes:
            futures += [self.hovers.plan_in_background(n, height, width) for n in names]
        return futures

    def planned(self, name: str, height: int, width: int) -> bool:
        """Is the model planned at this size (its hovers take the fast path)?"""
        return self.planner.known_plan(name, height, width) is not None

    # -------------------------------------------------------------- fused images
    def fuse(self, name: str, pair_id: str) -> np.ndarray:
        """The fused image, H x W float32 (cached)."""
        weights = self.weights_hash(name)
        fused = self.store.fused(weights, pair_id)
        if fused is not None:
            return fused
        a, b = self.get_pair(pair_id)
        model = self.model(name)
        if self.planning == "inline":
            record = self.hovers.record(name, pair_id) if self.planner.is_planned(name, *a.shape) else None
        else:
            record = self.hovers.kept_record(name, pair_id)
        if record is not None:  # the forward pass the hovers keep gave the fused image
            fused = record.fused.to("cpu", torch.float32).numpy()
        else:
            with torch.no_grad():
                ta, tb = (torch.from_numpy(x)[None, None].to(self.device, model_dtype(model)) for x in (a, b))
                fused = run(model, ta, tb)[0, 0].to("cpu", torch.float32).numpy()
        self.computed["fuse"] += 1
        self.store.put_fused(weights, pair_id, fused, name)
        return fused

    def fused_colour(self, name: str, pair_id: str) -> np.ndarray:
        """The fused image in colour, (H, W, 3) float32 RGB in [0, 1] (``fusion.io.Pair.colour_fused`` of
        ``fuse``): the fused Y on the PET's range with PET's Cb/Cr; a grey pair's in three equal channels."""
        key = (self.weights_hash(name), pair_id)
        hit = self._colour_fused.get(key)
        if hit is None:
            fused = self.fuse(name, pair_id)
            hit = self._colour_fused.put(key, self.colour_pair(pair_id).colour_fused(fused))
        return hit

    # -------------------------------------------------------------- hovers (``HoverRequests``)
    def pixel(self, names, pair_id: str, row: int, col: int) -> dict[str, PixelJacobian]:
        """Saliency of fused pixel (row, col) for every model in ``names``: {name: PixelJacobian}.

        Served from a cached dense result when there is one (``Method.DENSE_CACHE``),
        else computed on the receptive-field crop (or the full image where the crop
        is not exact); repeated hovers come from a small in-memory LRU.
        """
        return self.requests.pixel(names, pair_id, row, col)

    def prepare_hover(self, names, pair_id: str):
        """Start preparing hovers of ``names`` on the pair in a background thread, so that the first hovers
        need not wait: the plans, then in the worker processes if there are any, else here, the kept
        forward activations and the window programs (``HoverEngine.prepare``). Returns a
        ``concurrent.futures.Future`` (done when the workers are prepared too)."""
        return self.requests.prepare(names, pair_id)


    # -------------------------------------------------------------- whole images (``WholeImages``)
    def cached_dense(self, name: str, pair_id: str) -> DenseJacobian | None:
        """The dense result if it is in the cache (memory or disk), else None."""
        return self.whole.cached(name, pair_id)

    def dense(self, name: str, pair_id: str, progress=None, cancel=None) -> DenseJacobian:
        """The whole-image Jacobian (cached on disk).

        ``progress(done, total, preview)``: preview maps every name in
        ``fusion.saliency.MAP_NAMES`` to an H x W map, NaN where not yet known.
        ``cancel``: a callable returning True or a threading.Event (raises ``Cancelled``).
        """
        return self.whole.compute(name, pair_id, progress, cancel)

    def dense_method(self, name: str, pair_id: str) -> Method:
        """The path of the model's dense result on this pair: ``Method.CROPS``, ``COLOURED`` or ``FULL_IMAGE``."""
        return self.whole.method(name, pair_id)

    def has_block(self, name: str, pair_id: str, top: int, bottom: int) -> bool:
        """Is output rows [top, bottom) of the model's dense result stored (or the whole result)?"""
        return self.whole.has_block(name, pair_id, top, bottom)

    def has_dense(self, name: str, pair_id: str) -> bool:
        """Is the model's dense result on this pair cached (without reading it)?"""
        return self.whole.has(name, pair_id)

    def dense_rows(self, name: str, pair_id: str, top: int, bottom: int, progress=None, cancel=None) -> None:
        """Compute output rows [top, bottom) of the model's dense result and store them in the cache for
        ``merge_rows`` (``fusion.saliency.blocks.dense_block``); nothing when they, or the whole result,
        are stored already. ``progress(done, total, preview)``: preview maps of the block's rows."""
        self.whole.rows(name, pair_id, top, bottom, progress, cancel)

    def dense_cost(self, name: str, height: int, width: int) -> float:
        """Relative work of the model's dense result at this size (pixels x field area), for splitting requests."""
        return self.whole.cost(name, height, width)

    def dense_bytes(self, name: str, height: int, width: int) -> float:
        """Estimated peak memory of the model's dense result computed in one piece: the kept forward
        activations and the banded Jacobian."""
        return self.whole.peak_bytes(name, height, width)

    def merge_rows(self, name: str, pair_id: str, bounds: list[tuple[int, int]]) -> DenseJacobian:
        """The dense result from its stored blocks of rows ``bounds`` (``dense_rows``), stored as ``dense``
        stores it; the blocks are then deleted. Raises KeyError when a block is missing (evicted)."""
        return self.whole.merge(name, pair_id, bounds)

    def put_dense(self, name: str, pair_id: str, dense: DenseJacobian) -> DenseJacobian:
        """Store a dense result (computed here, or read back with ``load_hdf5``) as model ``name``'s
        on the stored pair ``pair_id``, so that every process serves it from the cache.

        Raises ValueError, storing nothing, when ``dense.meta`` says it was computed with other
        weights, on another pair, or by another ``METHOD_VERSION`` (one of ``keys.SAME_NUMBERS_AS`` is
        accepted: only names changed since).
        """
        return self.whole.put(name, pair_id, dense)
