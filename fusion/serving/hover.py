"""The hover engine: one fused pixel's Jacobian rows for one model, in this process or a worker's.

``HoverEngine`` computes the saliency of pixels of one model on a stored pair by the planned path
(``fusion.saliency.pixel.pixel_jacobians``), keeping each model's full-image forward activations per
pair (``record_forward``, bounded by ``hover_memory_bytes``) where hovers replay them, and recording
the window programs of an image size ahead of use. It needs a ``DiskStore`` and a ``Planner`` only,
so a hover worker process builds one (``for_worker``) without the whole service. Nothing is cached
here per pixel: the service keeps recent answers.
"""
from __future__ import annotations

import math

import torch

from ..background import PLAN
from ..devices import pick_device
from ..saliency.methods import Method
from ..saliency.pixel import PixelJacobian, pixel_jacobians
from ..saliency.planning import record_windows, replay_pays
from ..saliency.replay import ForwardRecord, record_forward
from ..saliency.verification import verify_replay
from ..saliency.windows import Unsupported
from ..settings import Settings
from .memory import LRU
from .planner import HoverPlan, Planner
from .store import DiskStore

REPLAY = ("auto", "always", "never")


class HoverEngine:
    """Hovers of the models of ``planner`` on the pairs of ``store`` (see the module docstring).

    Args:
        hover_memory_bytes: memory for kept forward activations in this process (0: none).
        replay: when hovers replay kept activations: "auto" (where verified and timed faster,
            ``replay_pays``), "always" (wherever verified) or "never".
        computed: counts of work done here, shared with the owner ("pixel", "record" are counted).
        concurrent_hovers: hovers running at once in this process, as ``replay_pays`` times them
            (2: the models of one hover in threads; 1: a hover worker process).
        largest_batch: window programs of the interior are recorded for batches of up to this many pixels.
    """

    def __init__(self, store: DiskStore, planner: Planner, hover_memory_bytes: int, replay: str = "auto",
                 computed: dict | None = None, concurrent_hovers: int = 2, largest_batch: int = 1):
        if replay not in REPLAY:
            raise ValueError(f"replay must be 'auto', 'always' or 'never', got {replay!r}")
        self.store, self.planner, self.replay = store, planner, replay
        self.records = LRU(64, int(hover_memory_bytes))  # (weights hash, pair id) -> ForwardRecord
        self.computed = computed if computed is not None else {"pixel": 0, "record": 0}
        self.concurrent_hovers, self.largest_batch = concurrent_hovers, largest_batch
        #: (weights hash, H, W, with a record) whose window programs are recorded in this process.
        self.windows_ready: set[tuple] = set()
        self._record_bytes: dict[tuple, float] = {}  # (weights hash, H, W) -> size of one record

    @classmethod
    def for_worker(cls, cache_dir: str, size_limit_bytes: int = 2**31, checkpoint="default",
                   hover_memory_bytes: int | None = None, replay: str = "auto", planning: str = "elsewhere",
                   concurrent_hovers: int = 1, largest_batch: int = 1) -> HoverEngine:
        """An engine of its own on the shared disk cache, on the CPU (a hover worker process's);
        ``hover_memory_bytes`` defaults to the settings' (``fusion.settings``)."""
        if hover_memory_bytes is None:
            hover_memory_bytes = Settings.from_env().hover_memory_bytes
        planner = Planner(DiskStore(cache_dir, size_limit_bytes), pick_device("cpu"), checkpoint, planning)
        return cls(planner.store, planner, hover_memory_bytes, replay, None, concurrent_hovers, largest_batch)

    # -------------------------------------------------------------- pixels
    def pixels(self, name: str, pair_id: str, a, b, pixels) -> list[PixelJacobian]:
        """The model's saliency of every (row, col) in ``pixels`` on the stored pair (H x W arrays a, b),
        computed together: crops of one geometry share one batch. Without inline planning, only what
        is ready is used; a model not planned at this size gets ``first_answers``."""
        planner = self.planner
        if planner.planning == "inline":
            method = planner.plan(name, *a.shape).method
            record = self.record(name, pair_id) if method == Method.CROPS else None
        else:  # only what is ready: planning, records and programs come from the background
            known = planner.known_plan(name, *a.shape)
            if known is None:
                if planner.planning == "background":
                    self.plan_in_background(name, *a.shape)
                return self.first_answers(name, a, b, pixels)
            method = known.method
            record = self.records.get((planner.weights_hash(name), pair_id)) if method == Method.CROPS else None
        self.computed["pixel"] += len(pixels)
        if record is not None:
            a, b = record.inputs  # the tensors the record was made on: no conversion, no comparison
        return pixel_jacobians(planner.model(name), a, b, pixels, method=method, record=record,
                               new_programs=planner.planning == "inline")

    def first_answers(self, name: str, a, b, pixels) -> list[PixelJacobian]:
        """Before the model is planned at this size, exact answers at once: the plain crop where the probed
        field is local with stride 1 (no shrinking windows, no programs), else the full image."""
        field = self.planner.field_soon(name)
        model = self.planner.model(name)
        self.computed["pixel"] += len(pixels)
        if field is not None and field.local and field.stride == 1:
            results = pixel_jacobians(model, a, b, pixels, method=Method.CROPS, shrinking=False, new_programs=False)
            reason = "the plain crop, while the fast path for this image size is prepared"
        else:
            results = pixel_jacobians(model, a, b, pixels, method=Method.FULL_IMAGE)
            reason = field.reason if field is not None and not field.local else \
                "the full image, while the model's receptive field is probed"
        for result in results:
            result.reason = reason
        return results

    # -------------------------------------------------------------- kept activations
    def kept_record(self, name: str, pair_id: str) -> ForwardRecord | None:
        """The model's kept activations on the pair if they are in memory (never records)."""
        return self.records.get((self.planner.weights_hash(name), pair_id))

    def record(self, name: str, pair_id: str) -> ForwardRecord | None:
        """The kept full-image activations of model ``name`` on the pair (made once, in memory).

        None where hovers do not replay them: not verified for this model and shape, not faster than
        computing the shrinking windows in this process (``replay_pays``), or one record does not fit
        ``hover_memory_bytes``. Plans the model at the pair's size first.
        """
        a, b = self.store.get_pair(pair_id)
        weights = self.planner.weights_hash(name)
        key = (weights, pair_id)
        hit = self.records.get(key)
        if hit is not None:
            return hit
        self.planner.plan(name, *a.shape)
        model = self.planner.model(name)
        size_key = (weights, *a.shape)
        budget = self.records.max_bytes
        if size_key not in self._record_bytes and budget > 0 and self.replay != "never":
            self._record_bytes[size_key] = self.record_bytes(name, *a.shape)  # before paying for it
        if self.replay == "never" or budget <= 0 or self._record_bytes.get(size_key, 0) > budget:
            return None
        if not (verify_replay(model, *a.shape) if self.replay == "always"
                else replay_pays(model, *a.shape, self.concurrent_hovers)):
            return None
        with self.planner.work_lock(("record", *key)):  # one thread records, the others wait for it
            hit = self.records.get(key)
            if hit is not None:
                return hit
            try:
                record = record_forward(model, a, b)
            except Unsupported:  # verified on a random pair, refused on this one: not again at this shape
                self._record_bytes[size_key] = math.inf
                return None
            self.computed["record"] += 1
            self._record_bytes[size_key] = record.nbytes
            self.records.put(key, record)
        self.planner.drop_work_lock(("record", *key))  # one per pair: do not let them pile up
        return record if record.nbytes <= self.records.max_bytes else None

    def record_bytes(self, name: str, height: int, width: int, side: int = 32) -> float:
        """Bytes a record of the model at this size would take: a ``side`` x ``side`` record's, per pixel
        (activations grow with the pixels); ``math.inf`` where the model cannot be recorded."""
        model = self.planner.model(name)
        a, b = (torch.rand(side, side, generator=torch.Generator().manual_seed(seed)) for seed in (1, 2))
        try:
            small = record_forward(model, a, b)
        except Unsupported:
            return math.inf
        return small.nbytes * height * width / side**2

    # -------------------------------------------------------------- preparation
    def prepare(self, names: list[str], pair_id: str) -> set[tuple]:
        """For each model: the kept forward activations on the pair where hovers replay them, and the window
        programs of the interior and the edges (once per process, image shape, and replay or not).
        Returns every (weights hash, H, W, with a record) prepared in this process so far."""
        a, _ = self.store.get_pair(pair_id)
        for name in names:
            self.record_programs(name, *a.shape, self.record(name, pair_id))
        return set(self.windows_ready)

    def record_programs(self, name: str, height: int, width: int, record: ForwardRecord | None = None) -> None:
        """The window programs of the model's hovers at this size, with ``record`` or without (once per process)."""
        key = (self.planner.weights_hash(name), height, width, record is not None)
        if key not in self.windows_ready:
            if self.planner.plan(name, height, width).method == Method.CROPS:
                record_windows(self.planner.model(name), height, width, record=record,
                               batch_sizes=tuple(range(1, self.largest_batch + 1)))
            self.windows_ready.add(key)

    def plan_job(self, name: str, height: int, width: int) -> HoverPlan:
        """Background: plan the model at this size (one process at a time), then record its window programs."""
        self.planner.probe_later(name).result()  # probed once, by the probing thread
        result = self.planner.plan_shared(name, height, width)
        self.record_programs(name, height, width)
        return result

    def plan_in_background(self, name: str, height: int, width: int):
        """``plan_job`` in the planner's background thread (a job submitted twice runs once); returns its Future."""
        return self.planner.background.submit(("plan", name, height, width), PLAN,
                                              lambda: self.plan_job(name, height, width))
