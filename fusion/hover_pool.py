"""Hovers of several models at once in worker processes, for ``SaliencyService.pixel``.

A hover runs 30 to 50 small PyTorch operations per model. Two threads of one
process take turns on the GIL around every one of them; on the 2-core CPU this
project is measured on, two models at a time in threads gained only 1.3 to 1.4
times over one after the other, and in two processes 1.8 times. Each worker
builds its own ``SaliencyService`` on the same disk cache, so pairs, fields and
verdicts are read from it, never recomputed, and runs on one intra-op thread
(two processes with two OpenMP threads each made hovers four times slower).

A worker answers with the Jacobian values inside the pixel's window only; the
caller rebuilds the H x W arrays. Anything a worker cannot answer (other weights,
a pair no longer on disk, a broken pool) is computed in the calling process.
"""
from __future__ import annotations

import atexit
import multiprocessing
import os
import threading
import time
import weakref
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import replace

import numpy as np

_SERVICE = None  # in a worker: its SaliencyService
_OPEN: weakref.WeakSet = weakref.WeakSet()  # in a caller: the HoverProcesses whose workers may be running


@atexit.register
def _close_open_pools() -> None:
    """At exit, stop every pool's workers that its owner did not close.

    Normally the executor's manager thread stops them, but where that thread has died (dash.testing
    stops its server thread with an asynchronous SystemExit, which can land in another thread) the
    idle workers wait for work for ever, and multiprocessing's own exit handler, which runs after
    this one, would wait for them for ever too.
    """
    for pool in list(_OPEN):
        pool.close(kill=True)


def _start_worker(settings: dict, owner_pid: int) -> None:
    import torch

    from .service import SaliencyService

    global _SERVICE
    threading.Thread(target=_exit_when_orphaned, args=(owner_pid,), daemon=True, name="owner-watch").start()
    torch.set_num_threads(1)
    _SERVICE = SaliencyService(**settings, hover_processes=0)
    _SERVICE._concurrent_hovers = 1  # a worker hovers one model at a time


def _exit_when_orphaned(owner_pid: int, every_s: float = 1.0) -> None:
    """In a worker: exit once the process that owns the pool is gone.

    A web process killed outright (gunicorn's SIGKILL of a timed-out worker, the OOM killer) runs no
    exit handler, and its idle workers would otherwise wait for work for ever, each holding PyTorch,
    the models and their kept activations.
    """
    while True:
        time.sleep(every_s)
        if not _running(owner_pid):
            os._exit(0)


def _running(pid: int) -> bool:
    """Is process ``pid`` there, and not a zombie (dead, waiting for its parent to collect it)?"""
    if os.path.isdir("/proc/self"):  # Linux: the state follows the command name in brackets
        try:
            with open(f"/proc/{pid}/stat") as stat:
                return stat.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
        except FileNotFoundError:
            return False
    try:  # elsewhere, ask the kernel (a zombie then counts as running)
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # there, under another user
        pass
    return True


def _prepare(names: list[str], pair_id: str) -> set[tuple]:
    """In a worker: build the models, keep their forward activations on the pair where hovers replay them,
    and record their window programs. Returns every (weights hash, H, W, replay) prepared here so far."""
    _SERVICE._prepare(names, pair_id)
    return set(_SERVICE._windows_ready)


def _hover(name: str, pair_id: str, row: int, col: int, weights_hash: str):
    """In a worker: (seconds, the PixelJacobian with ja, jb cut to ``sent``, sent); None for other
    weights, False for a pair that is not in the disk cache (any more)."""
    from .errors import InvalidInput

    svc = _SERVICE
    if svc.weights_hash(name) != weights_hash:
        return None
    try:
        a, b = svc.get_pair(pair_id)
    except InvalidInput:
        return False
    start = time.perf_counter()
    result = svc._pixel(name, pair_id, a, b, row, col)
    seconds = time.perf_counter() - start
    top, bottom, left, right = sent = result.window
    inside = (slice(top, bottom), slice(left, right))
    if any(np.count_nonzero(j) != np.count_nonzero(j[inside]) for j in (result.ja, result.jb)):
        top, bottom, left, right = sent = (0, a.shape[0], 0, a.shape[1])  # never expected: send everything
        inside = (slice(top, bottom), slice(left, right))
    return seconds, replace(result, ja=result.ja[inside].copy(), jb=result.jb[inside].copy()), sent


def _hover_many(tasks: list[tuple]) -> list:
    return [_hover(*task) for task in tasks]


def _rebuild(result, sent, shape):
    """The worker's answer with H x W ja, jb again (zero outside the window it sent)."""
    top, bottom, left, right = sent
    full = []
    for part in (result.ja, result.jb):
        array = np.zeros(shape, dtype=part.dtype)
        array[top:bottom, left:right] = part
        full.append(array)
    return replace(result, ja=full[0], jb=full[1])


class HoverProcesses:
    """A pool of worker processes for hovers, started on first use (see the module docstring).

    ``settings``: the keyword arguments of the workers' ``SaliencyService``.
    """

    #: A hover that takes longer than this counts as a hung worker (the pool is replaced).
    timeout_s = 120.0

    def __init__(self, workers: int, settings: dict):
        self.workers, self.settings = workers, settings
        self._pool, self._pid = None, None
        self._warming: list[Future] = []
        self._closed = False
        self._lock = threading.Lock()  # a hover and a background preparation may start the pool at once
        self._queueing = threading.Lock()  # hovers are queued before a preparation, or not at all while it runs

    def _executor(self) -> ProcessPoolExecutor:
        with self._lock:
            if self._closed:
                raise RuntimeError("the hover worker processes were closed for good")
            if self._pool is None or self._pid != os.getpid():
                methods = multiprocessing.get_all_start_methods()
                context = multiprocessing.get_context("forkserver" if "forkserver" in methods else "spawn")
                if "forkserver" in methods:
                    context.set_forkserver_preload(["fusion.service"])
                self._pool = ProcessPoolExecutor(self.workers, mp_context=context, initializer=_start_worker,
                                                 initargs=(self.settings, os.getpid()))
                self._pid = os.getpid()
                _OPEN.add(self)
            return self._pool

    def warm(self, names: list[str], pair_id: str) -> list[Future]:
        """Start the workers, and prepare hovers of ``names`` on the pair in each (does not wait).

        One task per worker: each takes long enough that the idle workers take one each; a worker
        that takes none records its window programs at first use.
        """
        starting = Future()  # warming() from here on: starting the pool and queueing take seconds
        with self._queueing:
            self._warming = [starting]
        try:
            pool = self._executor()
            self._warming = [pool.submit(_prepare, list(names), pair_id) for _ in range(self.workers)]
        finally:
            starting.set_result(None)
        return self._warming

    def warming(self) -> bool:
        """Are the workers starting, or preparing a pair (``warm``)? Hovers meanwhile run in the calling
        process, instead of waiting seconds for PyTorch to load in the workers."""
        return self._pid == os.getpid() and any(not future.done() for future in self._warming)

    def ready(self) -> bool:
        """Are the workers started (by ``warm``) and done preparing? (A server hovers in them only then.)"""
        return self._pool is not None and self._pid == os.getpid() and not self.warming()

    def hover(self, tasks: list[tuple[str, str, int, int, str]], costs: list[float], shape: tuple[int, int]) -> list:
        """(name, pair_id, row, col, weights_hash) per model -> per task (seconds, PixelJacobian),
        or where the calling process must compute it: None (the workers built other weights) or
        False (the pair is not in the disk cache, or the workers are preparing: a hover never waits
        behind a preparation in a worker's queue).

        The tasks are dealt out once, longest first to the least loaded worker by ``costs``
        (one message per worker: each round trip costs more than the smallest hovers).
        Raises what a worker raised; the pool is then replaced at the next call.
        """
        loads, shares = [0.0] * self.workers, [[] for _ in range(self.workers)]
        for k in sorted(range(len(tasks)), key=lambda k: -costs[k]):
            worker = loads.index(min(loads))
            loads[worker] += costs[k]
            shares[worker].append(k)
        pool = self._executor()
        with self._queueing:
            if self.warming():  # a preparation came first: a hover must not wait behind it in the workers
                return [False] * len(tasks)
            try:
                futures = [(share, pool.submit(_hover_many, [tasks[k] for k in share])) for share in shares if share]
            except Exception:
                self.close(kill=True)
                raise
        try:
            answers = {k: answer for share, future in futures
                       for k, answer in zip(share, future.result(timeout=self.timeout_s), strict=True)}
        except Exception:
            self.close(kill=True)
            raise
        return [answers[k] if answers[k] in (None, False) else
                (answers[k][0], _rebuild(answers[k][1], answers[k][2], shape)) for k in range(len(tasks))]

    def close(self, kill: bool = False, final: bool = False) -> None:
        """Stop the workers (``kill``: at once, for a pool that failed or hangs; the next call starts new ones).

        ``final``: for good (the owner is discarded): a later call raises RuntimeError instead of starting
        workers nobody would stop, for example from a preparation still running in the background.
        """
        with self._lock:
            pool, pid = self._pool, self._pid
            self._pool, self._pid, self._warming = None, None, []
            self._closed = self._closed or final
        if pool is not None and pid == os.getpid():
            # The pool's own dict, not a copy: a submit racing with this close may still spawn a worker
            # into it, up to the shutdown below (which waits for the submit's lock).
            processes = pool._processes or {}
            if kill:
                for process in list(processes.values()):
                    process.kill()
            pool.shutdown(wait=not kill, cancel_futures=True)
            # The pool's manager thread stops its workers; where it died (dash.testing stops its server
            # thread with an asynchronous SystemExit, which can land in a thread that reused its id),
            # the workers would wait for work for ever and keep the interpreter from exiting.
            for process in list(processes.values()):
                if process.is_alive():
                    process.kill()
