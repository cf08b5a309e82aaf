"""A background thread per process, for one-off work a server must not do in a request.

Probing a model's field, verifying the fast paths at a new image size, timing the replay
and recording window programs take from a fraction of a second to a minute. A server
answers first with an exact path and hands that work to ``BackgroundWork``: a single
daemon thread that runs one job at a time, the most urgent first, and runs a job
submitted twice only once.

The thread runs at the process's own priority. A lower one (a per-thread nice value)
was tried and made hovers wait up to minutes on a busy machine: the thread holds the GIL
between PyTorch calls, and a descheduled low-priority thread that holds it stops every
request thread of the process (priority inversion).
"""
from __future__ import annotations

import itertools
import logging
import os
import queue
import threading
from concurrent.futures import Future

log = logging.getLogger(__name__)

#: Priorities (lower runs first): fields are needed by every plan, plans by every preparation.
FIELD, PLAN, PREPARE = 0, 1, 2


class BackgroundWork:
    """``submit(key, priority, job)`` runs ``job()`` in this process's background thread; returns a Future.

    A key already queued or running returns that job's Future. A job's exception is logged and
    set on its Future. The thread starts at the first submit (and again in a forked child, or
    after ``close``).
    """

    def __init__(self, name: str = "fusion-background"):
        self.name = name
        self._lock = threading.Lock()
        self._order = itertools.count()
        self._queue: queue.PriorityQueue = queue.PriorityQueue()
        self._pending: dict = {}
        self._thread: threading.Thread | None = None
        self._pid = os.getpid()

    def submit(self, key, priority: int, job) -> Future:
        with self._lock:
            if self._pid != os.getpid():  # a forked child: the parent's thread is not here
                self._queue, self._pending, self._thread, self._pid = queue.PriorityQueue(), {}, None, os.getpid()
            future = self._pending.get(key)
            if future is not None:
                return future
            future = self._pending[key] = Future()
            self._queue.put((priority, next(self._order), key, job, future))
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, args=(self._queue, self._pending),
                                                name=self.name, daemon=True)
                self._thread.start()
        return future

    def pending(self, key) -> bool:
        """Is a job with this key queued or running in this process?"""
        with self._lock:
            return self._pid == os.getpid() and key in self._pending

    def close(self) -> None:
        """Cancel the queued jobs and stop the thread after the job it runs now (a later submit starts anew)."""
        with self._lock:
            jobs, pending = self._queue, self._pending
            self._queue, self._pending, self._thread = queue.PriorityQueue(), {}, None
            jobs.put((-1, -1, None, None, None))  # read before any job: the thread stops
        for future in pending.values():
            future.cancel()  # a running job's future is not cancelled: it completes

    def _run(self, jobs: queue.PriorityQueue, pending: dict) -> None:
        while True:
            _, _, key, job, future = jobs.get()
            if job is None:
                return
            if future.set_running_or_notify_cancel():
                try:
                    future.set_result(job())
                except BaseException as exc:  # noqa: BLE001 - reported on the future and in the log
                    log.warning("background job %r failed: %s", key, exc, exc_info=True)
                    future.set_exception(exc)
            with self._lock:
                if pending.get(key) is future:
                    del pending[key]
