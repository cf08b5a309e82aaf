"""Hovers of several models at once in worker processes, for ``SaliencyService.pixel``.

A hover runs 30 to 50 small PyTorch operations per model. Two threads of one
process take turns on the GIL around every one of them; on the 2-core CPU this
project is measured on, two models at a time in threads gained only 1.3 to 1.4
times over one after the other, and in two processes 1.8 times. Each worker
builds its own ``HoverEngine`` on the same disk cache, so pairs, fields and
verdicts are read from it, never recomputed, and runs on one intra-op thread
(two processes with two OpenMP threads each made hovers four times slower).

Each worker is a lane of its own with a queue in the calling process. A hover deals its
models out to the lanes, the longest first to the least loaded, so a model keeps to
the same lane (its weights, kept activations and window programs stay in that
process's caches). While a lane computes, the tasks of further hovers wait in its
queue and then go as one message; the worker computes the pixels of one model and
pair as one batch of crops, which costs far less per pixel than one at a time.

A worker answers with the Jacobian values inside the pixel's window only; the
caller rebuilds the H x W arrays. Anything a worker cannot answer (other weights,
a pair no longer on disk, a broken pool) is computed in the calling process.

The processes themselves (started on first use, watching their owner, killed at exit if not
closed) are a ``pool.WorkerProcesses``.
"""
from __future__ import annotations

import threading
import time
from concurrent.futures import Future
from dataclasses import replace

import numpy as np

from ..errors import InvalidInput
from ..saliency.methods import Method
from .hover import HoverEngine
from .pool import WorkerProcesses

#: The most pixels of one model a lane's batch usually holds: one per hover that a web process answers at
#: once (gunicorn.conf.py: 2 threads). Window programs are recorded for batches up to this size; larger
#: ones run without (exact, slower).
LARGEST_BATCH = 2
_ENGINE: HoverEngine | None = None  # in a worker: its hover engine


def _start_worker(settings: dict) -> None:
    import torch

    global _ENGINE
    torch.set_num_threads(1)
    _ENGINE = HoverEngine.for_worker(**settings, concurrent_hovers=1, largest_batch=LARGEST_BATCH)


def _prepare(names: list[str], pair_id: str) -> set[tuple]:
    """In a worker: build the models, keep their forward activations on the pair where hovers replay them,
    and record their window programs. Returns every (weights hash, H, W, replay) prepared here so far."""
    return _ENGINE.prepare(names, pair_id)


def _hover_many(tasks: list[tuple]) -> list:
    """In a worker: per task (name, pair_id, row, col, weights_hash), (seconds, the PixelJacobian with ja, jb cut
    to ``sent``, sent); None for other weights, False for a pair that is not in the disk cache (any more).

    The pixels of one model and pair are computed together (``HoverEngine.pixels``); seconds is the
    batch's time shared out among them.
    """
    engine, answers, groups = _ENGINE, [None] * len(tasks), {}
    for k, (name, pair_id, row, col, weights_hash) in enumerate(tasks):
        groups.setdefault((name, pair_id, weights_hash), {}).setdefault((int(row), int(col)), []).append(k)
    for (name, pair_id, weights_hash), by_pixel in groups.items():
        if engine.planner.weights_hash(name) != weights_hash:
            continue
        try:
            a, b = engine.store.get_pair(pair_id)
        except InvalidInput:
            for members in by_pixel.values():
                for k in members:
                    answers[k] = False
            continue
        start = time.perf_counter()
        results = engine.pixels(name, pair_id, a, b, list(by_pixel))
        seconds = (time.perf_counter() - start) / len(results)
        for members, result in zip(by_pixel.values(), results, strict=True):
            answer = (seconds, *_cut(result, a.shape))
            for k in members:
                answers[k] = answer
    return answers


def _cut(result, shape):
    """(the PixelJacobian with ja, jb cut to its window, the window sent) for the trip back to the caller.

    The crop path writes nothing outside the window (``crop_rows``); any other result is checked.
    """
    top, bottom, left, right = sent = result.window
    inside = (slice(top, bottom), slice(left, right))
    if result.method != Method.CROPS and any(np.count_nonzero(j) != np.count_nonzero(j[inside])
                                       for j in (result.ja, result.jb)):
        sent = (0, shape[0], 0, shape[1])  # never expected: send everything
        inside = (slice(0, shape[0]), slice(0, shape[1]))
    return replace(result, ja=result.ja[inside].copy(), jb=result.jb[inside].copy()), sent


def _rebuild(result, sent, shape):
    """The worker's answer with H x W ja, jb again (zero outside the window it sent)."""
    top, bottom, left, right = sent
    full = []
    for part in (result.ja, result.jb):
        array = np.zeros(shape, dtype=part.dtype)
        array[top:bottom, left:right] = part
        full.append(array)
    return replace(result, ja=full[0], jb=full[1])


class _Lane:
    """One worker process (an executor of one) and the tasks waiting for it, sent as one batch when it is free."""

    def __init__(self, executor):
        self.executor = executor
        self.waiting: list[tuple[tuple, Future]] = []
        self.busy = False


class HoverProcesses:
    """Worker processes for hovers, one lane each, started on first use (see the module docstring).

    ``settings``: the keyword arguments of the workers' ``HoverEngine.for_worker`` (``cache_dir`` at least).
    ``processes``: the ``WorkerProcesses`` under the lanes.
    """

    #: A hover that takes longer than this counts as a hung worker (the pool is replaced).
    timeout_s = 120.0

    def __init__(self, workers: int, settings: dict):
        self.workers, self.settings = workers, settings
        self.processes = WorkerProcesses(workers, _start_worker, (settings,), preload=(__name__,))
        self._lanes: list[_Lane] | None = None
        self._executors = None
        self._warming: list[Future] = []
        self._lock = threading.Lock()  # a hover and a background preparation may start the pool at once
        self._queueing = threading.Lock()  # hovers are queued before a preparation, or not at all while it runs
        self._sending = threading.RLock()  # the lanes' queues (a batch's callback may run in the sending thread)
        #: Batches sent to the workers and the tasks they held, since this object was made.
        self.sent = {"batches": 0, "tasks": 0}

    def start(self) -> list[_Lane]:
        """The lanes of this process, their workers started now if they are not; RuntimeError once closed."""
        with self._lock:
            executors = self.processes.start()
            if executors is not self._executors:
                self._lanes, self._executors = [_Lane(executor) for executor in executors], executors
            return self._lanes

    def _current(self) -> list[_Lane] | None:
        """The lanes whose workers are started in this process, else None."""
        executors = self.processes.started()
        return self._lanes if executors is not None and executors is self._executors else None

    def pids(self) -> list[int]:
        """The process ids of the workers running now (none before the first use)."""
        return self.processes.pids()

    def queued(self) -> int:
        """Tasks waiting in the lanes' queues for their worker to be free."""
        with self._sending:
            return sum(len(lane.waiting) for lane in self._lanes or [])

    def warm(self, names: list[str], pair_id: str) -> list[Future]:
        """Start the workers, and prepare hovers of ``names`` on the pair in each (does not wait)."""
        starting = Future()  # warming() from here on: starting the pool and queueing take seconds
        with self._queueing:
            self._warming = [starting]
        try:
            self._warming = [lane.executor.submit(_prepare, list(names), pair_id) for lane in self.start()]
        finally:
            starting.set_result(None)
        return self._warming

    def warming(self) -> bool:
        """Are the workers starting, or preparing a pair (``warm``)? Hovers meanwhile run in the calling
        process, instead of waiting seconds for PyTorch to load in the workers."""
        return self._current() is not None and any(not future.done() for future in self._warming)

    def ready(self) -> bool:
        """Are the workers started (by ``warm``) and done preparing? (A server hovers in them only then.)"""
        return self._current() is not None and not self.warming()

    def hover(self, tasks: list[tuple[str, str, int, int, str]], costs: list[float], shape: tuple[int, int]) -> list:
        """(name, pair_id, row, col, weights_hash) per model -> per task (seconds, PixelJacobian),
        or where the calling process must compute it: None (the workers built other weights) or
        False (the pair is not in the disk cache, or the workers are preparing: a hover never waits
        behind a preparation in a worker's queue).

        The tasks are dealt out once, longest first to the least loaded lane by ``costs``, and join
        the lane's queue. Raises what a worker raised; the pool is then replaced at the next call.
        """
        loads, shares = [0.0] * self.workers, [[] for _ in range(self.workers)]
        for k in sorted(range(len(tasks)), key=lambda k: -costs[k]):
            lane = loads.index(min(loads))
            loads[lane] += costs[k]
            shares[lane].append(k)
        lanes = self.start()
        futures: list[Future] = [Future() for _ in tasks]
        with self._queueing:
            if self.warming():  # a preparation came first: a hover must not wait behind it in the workers
                return [False] * len(tasks)
            with self._sending:
                if lanes is not self._lanes:  # closed meanwhile (a failed hover of another thread)
                    return [False] * len(tasks)
                for lane, share in zip(lanes, shares, strict=True):
                    lane.waiting += [(tasks[k], futures[k]) for k in share]
                    if share and not lane.busy:
                        self._send(lane)
        deadline = time.monotonic() + self.timeout_s
        try:
            answers = [future.result(timeout=max(0.0, deadline - time.monotonic())) for future in futures]
        except Exception:
            self.close(kill=True)
            raise
        return [answer if answer in (None, False) else (answer[0], _rebuild(answer[1], answer[2], shape))
                for answer in answers]

    def _send(self, lane: _Lane) -> None:
        """Send the lane's waiting tasks as one batch (the caller holds ``_sending``)."""
        batch, lane.waiting, lane.busy = lane.waiting, [], True
        self.sent["batches"] += 1
        self.sent["tasks"] += len(batch)
        try:
            sent = lane.executor.submit(_hover_many, [task for task, _ in batch])
        except Exception as error:  # a broken or closed pool: the callers compute these themselves
            lane.busy = False
            for _, future in batch:
                future.set_exception(error)
            return
        sent.add_done_callback(lambda done: self._answered(lane, batch, done))

    def _answered(self, lane: _Lane, batch: list[tuple[tuple, Future]], done: Future) -> None:
        """A batch's answers reach its callers; the tasks that waited meanwhile go next."""
        try:
            answers = done.result()
        except BaseException as error:  # noqa: BLE001 - handed to every caller of the batch
            for _, future in batch:
                future.set_exception(error)
        else:
            for (_, future), answer in zip(batch, answers, strict=True):
                future.set_result(answer)
        with self._sending:
            lane.busy = False
            if lane.waiting and lane in (self._lanes or []):
                self._send(lane)

    def close(self, kill: bool = False, final: bool = False) -> None:
        """Stop the workers (``kill``: at once, for a pool that failed or hangs; the next call starts new ones).

        ``final``: for good (the owner is discarded): a later call raises RuntimeError instead of starting
        workers nobody would stop, for example from a preparation still running in the background.
        """
        with self._lock:
            lanes = self._current()
            self._lanes, self._executors, self._warming = None, None, []
            self.processes.close(kill, final)
        for lane in lanes or []:
            with self._sending:
                waiting, lane.waiting = lane.waiting, []
            for _, future in waiting:
                future.set_exception(RuntimeError("the hover worker processes were closed"))
