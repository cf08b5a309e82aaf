"""Local background jobs: Dash's DiskcacheManager, with every job started from a clean process.

``dash.DiskcacheManager`` forks the web process for each job. The web process is
multi-threaded and keeps SQLite databases open (the service cache and the job
store, both diskcache), and SQLite's per-process lock bookkeeping is copied into
the child, which then reads and writes with locks it does not hold (SQLite: never
carry an open database across ``fork()``). Seen here as a finished job's result
and progress missing, and the entries written before it gone (the page showed
"not computed" as if the Compute click had been lost), and as jobs that hung at
their first read. Here jobs fork from a "forkserver": a process started once by
exec, with the dashboard preloaded, that has never opened a database.
"""
from __future__ import annotations

import dash

from . import backend
from .config import Config

PRELOAD = ["dashboard.callbacks"]  # imported once by the forkserver (torch, the models, the callbacks)


class DiskcacheManager(dash.DiskcacheManager):
    """``dash.DiskcacheManager`` whose jobs run in processes forked from a clean forkserver."""

    def __init__(self, cache, config: Config):
        super().__init__(cache)
        self.config = config

    def call_job_fn(self, key, job_fn, args, context):
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


def run_job(config: Config, job_fn, *args) -> None:
    """In the job's process: the web process's settings, then Dash's job."""
    backend.configure(config)
    job_fn(*args)
