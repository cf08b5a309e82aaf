"""Hover requests: one fused pixel for several models at once, answered the fastest exact way.

``HoverRequests.pixel`` answers from its memory of recent answers, else from a whole-image result in
this process's memory (its banded Jacobian: ``Method.DENSE_CACHE``), else computes the rest with the
``HoverEngine``: in the hover worker processes (``HoverProcesses``) once they are ready, else in threads
of this process. Models are dealt out longest first, by the hover times measured here (by the field's
area until every model has one). ``prepare`` readies a pair's hovers ahead of the first one: the
plans, then the kept activations and window programs in the workers or here.
"""
from __future__ import annotations

import os
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor

from ..background import PREPARE
from ..errors import InvalidInput
from ..saliency.methods import Method
from ..saliency.pixel import PixelJacobian
from ..saliency.result import DenseJacobian
from .hover import HoverEngine
from .hover_processes import HoverProcesses
from .memory import LRU
from .whole import WholeImages

#: Threads computing the pixels of several models at once (each crop runs on one intra-op thread).
HOVER_WORKERS = max(1, min(4, os.cpu_count() or 1))


class HoverRequests:
    """The hovers of the models of ``hovers.planner`` on the pairs of ``hovers.store`` (module docstring).

    ``pool``: the hover worker processes, or None (threads only); ``threads``: threads hovering several
    models at once here. Public state: ``memory`` (recent answers), ``seconds`` ({(model, H, W): moving
    average of a hover's seconds}), ``local_only`` (models whose weights the workers do not have, so
    computed here) and ``prepared`` ((weights hash, pair id) whose preparation was started).
    """

    def __init__(self, hovers: HoverEngine, whole: WholeImages, pool: HoverProcesses | None,
                 threads: int = HOVER_WORKERS):
        self.hovers, self.whole, self.pool = hovers, whole, pool
        self.store, self.planner, self.computed = hovers.store, hovers.planner, hovers.computed
        self.memory = LRU(256)  # (weights hash, pair id, row, col) -> PixelJacobian
        self.seconds: dict[tuple, float] = {}
        self.local_only: set[str] = set()
        self.prepared: set[tuple] = set()
        self._threads, self._threads_pid, self._thread_count = None, None, threads
        self._lock = threading.Lock()

    def pixel(self, names, pair_id: str, row: int, col: int) -> dict[str, PixelJacobian]:
        """Saliency of fused pixel (row, col) for every model in ``names``: {name: PixelJacobian}
        (see ``SaliencyService.pixel``); raises InvalidInput for a pixel outside the image."""
        names = [names] if isinstance(names, str) else list(names)
        a, b = self.store.get_pair(pair_id)
        row, col = int(row), int(col)
        if not (0 <= row < a.shape[0] and 0 <= col < a.shape[1]):
            raise InvalidInput(f"pixel ({row}, {col}) is outside the {a.shape[0]} x {a.shape[1]} image")
        planning, weights = self.planner.planning, self.planner.weights_hash
        out, missing = {}, []
        for name in names:
            hit = self.memory.get((weights(name), pair_id, row, col))
            if hit is None:
                missing.append(name)
            else:
                out[name] = hit
        if planning == "inline":
            for name in missing:
                self.planner.plan(name, *a.shape)  # plans first, so workers only run crops
        elif missing:
            self._prepare_later(missing, pair_id)
        # Longest first (the classic rule for the shortest total on a few workers): by the hover times
        # measured here once every model has one, by field area before that (the image's where unknown).
        costs = {name: self.seconds.get((name, *a.shape)) for name in missing}
        if None in costs.values():
            fields = {name: self.planner.known_field(name) for name in missing}
            costs = {name: a.size if fields[name] is None else fields[name].rows * fields[name].cols
                     for name in missing}
        missing.sort(key=lambda n: -costs[n])
        pool = self.pool  # a server hovers in workers once started and prepared (in the background)
        in_workers = pool is not None and (pool.ready() if planning != "inline" else not pool.warming())
        if len(missing) > 1 and in_workers:
            results = self._in_processes(missing, costs, pair_id, a, b, row, col)
        elif len(missing) > 1:  # small crops run single-threaded: two models at a time use both cores
            results = list(self._thread_pool().map(lambda n: self._timed(n, pair_id, a, b, row, col), missing))
        else:
            results = [self._timed(n, pair_id, a, b, row, col) for n in missing]
        for name, result in zip(missing, results, strict=True):
            out[name] = self.memory.put((weights(name), pair_id, row, col), result)
        return {name: out[name] for name in names}

    def prepare(self, names, pair_id: str) -> Future:
        """Start preparing hovers of ``names`` on the pair in the background thread (see
        ``SaliencyService.prepare_hover``); the Future is done when the workers are prepared too."""
        names = [names] if isinstance(names, str) else list(names)
        a, _ = self.store.get_pair(pair_id)  # an unknown pair fails here, not in the background
        self.prepared.update((self.planner.weights_hash(n), pair_id) for n in names)

        def prepare():
            for name in names:
                self.planner.plan_shared(name, *a.shape)
            pool = self.pool
            if pool is None:
                self.hovers.prepare(names, pair_id)
                return
            try:
                warming = pool.warm(names, pair_id)  # after the plans: the workers read the verdicts
            except RuntimeError:  # the service was closed meanwhile: nothing to prepare for
                return
            for future in warming:
                future.result()
        return self.planner.background.submit(("prepare", tuple(names), pair_id), PREPARE, prepare)

    def _prepare_later(self, names: list[str], pair_id: str) -> None:
        """``prepare`` once per process for models and pair hovered here (shown by another process)."""
        new = [n for n in names if (self.planner.weights_hash(n), pair_id) not in self.prepared]
        if self.planner.planning == "background" and new:
            self.prepare(new, pair_id)

    def _thread_pool(self) -> ThreadPoolExecutor:
        """This process's threads for hovers of several models (a forked child gets its own)."""
        with self._lock:
            if self._threads is None or self._threads_pid != os.getpid():
                self._threads, self._threads_pid = ThreadPoolExecutor(self._thread_count), os.getpid()
            return self._threads

    def _in_processes(self, names, costs, pair_id, a, b, row, col) -> list[PixelJacobian]:
        """The hovers of ``names`` in the worker processes, dealt out by ``costs``; whatever they cannot
        answer (other weights, a pair gone from the disk cache, a broken pool) is computed here."""
        remote = [n for n in names if n not in self.local_only and self._dense_rows(n, pair_id) is None
                  and (self.planner.planning == "inline" or self.planner.known_plan(n, *a.shape) is not None)]
        tasks = [(n, pair_id, row, col, self.planner.weights_hash(n)) for n in remote]
        try:
            answers = self.pool.hover(tasks, [costs[n] for n in remote], a.shape)
        except Exception:  # computed here below, where a real error shows again
            answers = [False] * len(remote)
        done = {}
        for name, answer in zip(remote, answers, strict=True):
            if answer is None:  # the workers built other weights (a model given to this service directly)
                self.local_only.add(name)
            elif answer:
                self._note_time(name, a.shape, answer[0])
                self.computed["pixel"] += 1
                done[name] = answer[1]
        rest = [n for n in names if n not in done]
        done.update(zip(rest, self._thread_pool().map(lambda n: self._timed(n, pair_id, a, b, row, col), rest),
                        strict=True))
        return [done[n] for n in names]

    def _timed(self, name, pair_id, a, b, row, col) -> PixelJacobian:
        """One model's hover, from a dense result in memory or ``HoverEngine.pixels``, keeping a moving
        average of its time per model and image shape (for the hover order)."""
        start = time.perf_counter()
        dense = self._dense_rows(name, pair_id)
        result = (dense_pixel(dense, row, col) if dense is not None
                  else self.hovers.pixels(name, pair_id, a, b, [(row, col)])[0])
        self._note_time(name, a.shape, time.perf_counter() - start)
        return result

    def _note_time(self, name: str, shape, seconds: float) -> None:
        key = (name, *shape)
        previous = self.seconds.get(key)
        self.seconds[key] = seconds if previous is None else 0.8 * previous + 0.2 * seconds

    def _dense_rows(self, name: str, pair_id: str) -> DenseJacobian | None:
        """The dense result in memory whose banded Jacobian serves hover rows, if there is one."""
        dense = self.whole.in_memory(name, pair_id)
        return dense if dense is not None and dense.band_a is not None else None


def dense_pixel(dense: DenseJacobian, row: int, col: int) -> PixelJacobian:
    """Pixel (row, col)'s row read from a whole-image result's banded Jacobian (``Method.DENSE_CACHE``)."""
    ja, jb = dense.row(row, col)
    height, width = dense.fused.shape
    window = dense.field.box(row, col, height, width) if dense.field.local else (0, height, 0, width)
    return PixelJacobian(row, col, ja, jb, float(dense.fused[row, col]), window, Method.DENSE_CACHE, dense.reason)
