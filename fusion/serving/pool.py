"""A generic pool of worker processes, one lane (a single-process executor) each, that never outlives
its owner.

Each worker watches the process that started it and exits within a second of it being gone
(``fusion.processes.exit_when_orphaned``): a web process killed outright (gunicorn's SIGKILL, the OOM
killer) runs no exit handler. An exit handler of the owner kills the workers of pools not closed:
where an executor's manager thread has died (dash.testing stops its server thread with an
asynchronous SystemExit, which can land in another thread) idle workers would wait for work for ever,
and multiprocessing's own exit handler, which runs after this one, would wait for them too.
"""
from __future__ import annotations

import atexit
import multiprocessing
import os
import threading
import weakref
from concurrent.futures import ProcessPoolExecutor

from ..processes import exit_when_orphaned

_OPEN: weakref.WeakSet = weakref.WeakSet()  # the pools whose workers may be running


@atexit.register
def _close_open_pools() -> None:
    for pool in list(_OPEN):
        pool.close(kill=True)


def _start_worker(owner_pid: int, initializer, initargs: tuple) -> None:
    exit_when_orphaned(owner_pid)
    if initializer is not None:
        initializer(*initargs)


class WorkerProcesses:
    """``count`` worker processes started on first use (``start``), each ``initializer(*initargs)`` once.

    ``preload``: modules a forkserver imports once for every worker it forks. A forked child of the
    owner starts workers of its own.
    """

    def __init__(self, count: int, initializer=None, initargs: tuple = (), preload: tuple[str, ...] = ()):
        self.count, self.initializer, self.initargs, self.preload = count, initializer, initargs, preload
        self._executors: list[ProcessPoolExecutor] | None = None
        self._pid = None
        self._closed = False
        self._lock = threading.Lock()

    def start(self) -> list[ProcessPoolExecutor]:
        """The executors (one process each) of this process, started now if they are not.
        Raises RuntimeError once closed for good."""
        with self._lock:
            if self._closed:
                raise RuntimeError("the worker processes were closed for good")
            if self._executors is None or self._pid != os.getpid():
                methods = multiprocessing.get_all_start_methods()
                context = multiprocessing.get_context("forkserver" if "forkserver" in methods else "spawn")
                if "forkserver" in methods and self.preload:
                    context.set_forkserver_preload(list(self.preload))
                self._executors = [ProcessPoolExecutor(1, mp_context=context, initializer=_start_worker,
                                                       initargs=(os.getpid(), self.initializer, self.initargs))
                                   for _ in range(self.count)]
                self._pid = os.getpid()
                _OPEN.add(self)
            return self._executors

    def started(self) -> list[ProcessPoolExecutor] | None:
        """The executors if they are started in this process, else None (starts nothing)."""
        return self._executors if self._pid == os.getpid() else None

    def pids(self) -> list[int]:
        """The process ids of the workers running now (none before the first use)."""
        return [pid for executor in self.started() or [] for pid in list(executor._processes or {})]

    def close(self, kill: bool = False, final: bool = False) -> None:
        """Stop the workers (``kill``: at once, for a pool that failed or hangs; ``start`` makes new ones).

        ``final``: for good (the owner is discarded): a later ``start`` raises RuntimeError instead of
        starting workers nobody would stop.
        """
        with self._lock:
            executors, pid = self._executors, self._pid
            self._executors, self._pid = None, None
            self._closed = self._closed or final
        if executors is None or pid != os.getpid():
            return
        for executor in executors:
            # The pool's own dict, not a copy: a submit racing with this close may still spawn a worker
            # into it, up to the shutdown below (which waits for the submit's lock).
            processes = executor._processes or {}
            if kill:
                for process in list(processes.values()):
                    process.kill()
            executor.shutdown(wait=not kill, cancel_futures=True)
            # The manager thread stops its worker; where it died, the worker would wait for work for ever.
            for process in list(processes.values()):
                if process.is_alive():
                    process.kill()
