"""Background-job managers: Dash's, behind a line with limits and heartbeats (``job_slots``).

Both managers hand a request's job to ``job_slots.JobSlots`` instead of starting it: it
waits there until a slot is free (``Config.jobs_per_user``, ``Config.jobs_total``) and
the process whose page poll admitted it starts it. Dash's handle of a job is its cache
key, signed by Dash, so a page polls and cancels only its own jobs; the user is taken
from the request (``auth.current_user``) when the job is asked for, never from the page.
Each poll answers from the shared ticket: waiting and running jobs keep the page polling,
a lost one (no heartbeat) ends its polling, which gives Compute back, and the page learns
its place in line or the loss through a store (a Dash side update): ``JOB_STORE`` for the
Compute, or the store a background callback names with ``news_to`` (the cohort's). Cancel
ends the ticket, so the polling ends too, even when the job's worker is already dead.

Local jobs: ``dash.DiskcacheManager`` forks the web process for each job. The web
process is multi-threaded and keeps SQLite databases open (the service cache and the
job store, both diskcache), and SQLite's per-process lock bookkeeping is copied into
the child, which then reads and writes with locks it does not hold (SQLite: never
carry an open database across ``fork()``). Seen here as a finished job's result
and progress missing, and the entries written before it gone (the page showed
"not computed" as if the Compute click had been lost), and as jobs that hung at
their first read. Here jobs fork from a "forkserver": a process started once by
exec, with the dashboard preloaded, that has never opened a database.

Celery jobs: tasks are acknowledged late and requeued when their worker process dies
(``configure_celery``); a whole worker killed leaves its message unacknowledged until the
broker's visibility timeout, so its job is reported lost (after ``job_slots.LOST_AFTER``)
and the page offers a Retry; a late redelivery of it does nothing.
"""
from __future__ import annotations

import functools
import time

import dash
from dash.exceptions import PreventUpdate

from . import backend, dense_job, ids, job_slots
from .auth import current_user
from .config import Config

PRELOAD = ["dashboard.callbacks"]  # imported once by the forkserver (torch, the models, the callbacks)
JOB_STORE = ids.DENSE_JOB  # the page's store of its job's place in line or fate (a dcc.Store id)
#: The attribute of a background callback naming the store of its job's news (set by ``news_to``).
NEWS_STORE = "fusion_job_store"
#: Request headers a job never needs (they would travel to the job's process, the broker and the store).
PRIVATE_HEADERS = ("authorization", "cookie", "proxy-authorization")
#: Broker visibility timeout: a job running longer than this would be started a second time.
VISIBILITY_TIMEOUT = 12 * 3600

#: The Flask extension slot (``app.server.extensions``) where ``attach`` keeps an app's job manager.
EXTENSION = "fusion_jobs"

_running_key: str | None = None  # the cache key of the local job this process runs


def job_key() -> str | None:
    """The cache key of the job this process runs now (local job or Celery task), else None."""
    if _running_key is not None:
        return _running_key
    try:
        from celery import current_task
    except ImportError:
        return None
    request = getattr(current_task, "request", None) if current_task else None
    args = getattr(request, "args", None)
    return args[0] if args else None


def news_to(store_id: str):
    """Decorator for a background callback: its job's place in line or fate goes to the ``dcc.Store``
    ``store_id`` (without it: ``JOB_STORE``). Put it under ``@feature.callback``."""
    def mark(fn):
        setattr(fn, NEWS_STORE, store_id)
        return fn
    return mark


class Guarded:
    """A background callback that runs only while its ticket is running, with a heartbeat."""

    def __init__(self, fn, slots: job_slots.JobSlots):
        functools.update_wrapper(self, fn)
        self.fn, self.slots = fn, slots

    def __call__(self, *args, **kwargs):
        key = job_key()
        if key is None:  # not started through the line (a direct call)
            return self.fn(*args, **kwargs)
        if not self.slots.begin(key):
            raise PreventUpdate  # cancelled, lost or redelivered too late: nothing to do
        try:
            with self.slots.heartbeat(key):
                return self.fn(*args, **kwargs)
        finally:
            self.slots.finish(key)


class QueuedJobs:
    """Mixin for a Dash background-callback manager: jobs wait in ``self.slots`` and are watched there."""

    slots: job_slots.JobSlots
    news_stores: dict  # background callback's name (Dash's registry key) -> the store of its job's news

    def make_job_fn(self, fn, progress, key=None):
        self.news_stores[key] = getattr(fn, NEWS_STORE, JOB_STORE)
        return super().make_job_fn(Guarded(fn, self.slots), progress, key)

    def call_job_fn(self, key, job_fn, args, context):
        """In the request: queue the job for the signed-in user; returns Dash's handle (the key)."""
        name = next(k for k, f in self.func_registry.items() if f is job_fn)
        context = dict(context)
        context["headers"] = {k: v for k, v in dict(context.get("headers") or {}).items()
                              if k.lower() not in PRIVATE_HEADERS}
        context["cookies"] = {}
        self._start(self.slots.submit(key, current_user(), name, args, context))
        return key

    def _start(self, starts: list[job_slots.Start]) -> None:
        for s in starts:
            try:
                handle = self.dispatch(s.key, self.func_registry[s.job], s.args, s.context)
            except Exception as exc:  # noqa: BLE001 - a broker or process that cannot start: the page is told
                self.slots.not_started(s.key, f"it could not be started ({type(exc).__name__}: {exc})")
            else:
                self.slots.started(s.key, handle)

    def job_running(self, job):
        ticket, news, starts = self.slots.poll(job)
        self._start(starts)
        if news is not None:
            self._news[job] = (self.news_stores.get(ticket and ticket.get("job"), JOB_STORE), news)
        if ticket is None:
            return False
        if ticket["state"] in job_slots.ACTIVE:
            return True
        if ticket["state"] == "done":  # its result may still be on its way
            return (time.time() - ticket["ended"] < job_slots.DONE_GRACE and ticket["handle"] is not None
                    and bool(super().job_running(ticket["handle"])))
        return False

    def terminate_job(self, job):
        if job is None:
            return
        handle = self.slots.cancel(job)
        dense_job.cancel(self.config, job)  # every task of its request, wherever it runs
        if handle is not None:
            self.stop(handle)

    def stop(self, handle) -> None:
        """Stop the process or task behind ``handle`` (Dash's own terminate_job)."""
        super().terminate_job(handle)

    def get_updated_props(self, key):
        props = super().get_updated_props(key)
        store, news = self._news.pop(key, (None, None))
        return props if news is None else {**props, store: {"data": news}}


class DiskcacheManager(QueuedJobs, dash.DiskcacheManager):
    """Local jobs, each in a process forked from a clean forkserver, behind the line."""

    def __init__(self, cache, config: Config):
        import psutil

        def alive(pid) -> bool:
            try:
                return psutil.Process(int(pid)).status() != psutil.STATUS_ZOMBIE
            except psutil.Error:
                return False

        self.config, self._news, self.news_stores = config, {}, {}
        self.slots = job_slots.JobSlots(job_slots.DiskStore(config.jobs_dir / "slots"), config.jobs_per_user,
                                        config.jobs_total, alive=alive)
        super().__init__(cache)

    def stop(self, handle) -> None:
        import psutil

        try:
            super().stop(handle)
        except psutil.NoSuchProcess:  # it ended between Dash's look and its kill
            pass

    def dispatch(self, key, job_fn, args, context):
        import multiprocess

        if "forkserver" in multiprocess.get_all_start_methods():
            mp = multiprocess.get_context("forkserver")
            mp.set_forkserver_preload(PRELOAD)
        else:  # Windows: a fresh interpreter per job
            mp = multiprocess.get_context("spawn")
        process = mp.Process(target=run_job,
                             args=(self.config, job_fn, key, self._make_progress_key(key), args, context))
        process.start()
        return process.pid


def run_job(config: Config, job_fn, key: str, *args) -> None:
    """In the job's process: the web process's settings, then Dash's job."""
    global _running_key
    backend.configure(config)
    _running_key = key
    job_fn(key, *args)


def configure_celery(celery_app) -> None:
    """Settings that make a job survive its worker process (see the module docstring)."""
    celery_app.conf.update(
        # A dense job takes seconds to minutes: each worker process reserves only the job it runs,
        # so that queued jobs go to idle processes instead of waiting behind a busy one.
        worker_prefetch_multiplier=1,
        # Acknowledged when done, not when received, and requeued when the process running it dies
        # (SIGKILL, out of memory); job_slots bounds how often one job is started.
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        broker_transport_options={"visibility_timeout": VISIBILITY_TIMEOUT},
        result_backend_transport_options={"visibility_timeout": VISIBILITY_TIMEOUT},
    )
    dense_job.register_celery(celery_app)  # the helpers a Compute asks idle workers for


class CeleryManager(QueuedJobs, dash.CeleryManager):
    """Jobs on Celery workers, behind the line; its signing secret never expires.

    Dash signs background-job handles with a secret kept in the result store and read once
    per web process. Celery's store gives every key the result lifetime (one day), so a web
    process started a day later (a restarted gunicorn worker) made a new secret and rejected
    the job polls of pages served by the older processes. Here the secret has no expiry.
    """

    def __init__(self, celery_app, config: Config):
        self.config, self._news, self.news_stores = config, {}, {}
        self.slots = job_slots.JobSlots(job_slots.RedisStore(config.redis_url), config.jobs_per_user,
                                        config.jobs_total)
        super().__init__(celery_app)

    def get_or_create_signing_secret(self, generate):
        client = self.handle.backend.client
        client.set(self.SIGNING_SECRET_KEY, generate(), nx=True)
        client.persist(self.SIGNING_SECRET_KEY)  # one stored by dash.CeleryManager itself expires
        return client.get(self.SIGNING_SECRET_KEY)

    def dispatch(self, key, job_fn, args, context):
        return job_fn.delay(key, self._make_progress_key(key), args, context).task_id


def attach(app: dash.Dash, manager: QueuedJobs) -> None:
    """Keep ``manager``, the background-callback manager ``app`` was built with, on its Flask server."""
    app.server.extensions[EXTENSION] = manager


def manager_of(app: dash.Dash) -> QueuedJobs:
    """The job manager of an app built by ``app.create_app``: a ``DiskcacheManager``, or with REDIS_URL a
    ``CeleryManager`` (its Celery app is ``.handle``; both keep their background callbacks in
    ``.func_registry``). Raises KeyError for an app built without ``attach``."""
    return app.server.extensions[EXTENSION]
