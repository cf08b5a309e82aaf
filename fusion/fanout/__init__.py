"""Whole-image maps of many models and pairs on every core and every worker.

A request is a list of tasks, each the output rows [top, bottom) of one model on one pair
(``plan_tasks``: large images and idle workers get more blocks). Every process that computes
runs the same loop (``work``): take the next task nobody holds (a claim on the ``Board``, renewed
while it computes), compute it into the service's cache (``SaliencyService.dense_rows``) and
mark it done; the process that finishes the last block of a (model, pair) merges it
(``SaliencyService.merge_rows``): the same maps as one whole-image computation.

The requester (``run``) is one of these processes: it starts helpers (local worker processes,
or Celery tasks through ``start_helpers``), computes with them, and reports progress until every
task is done or failed. A helper that dies leaves its claim to expire; the task is then taken
again, at most ``ATTEMPTS`` times in all, and reported failed after that. Cancelling sets a flag
that every claimant checks between chunks. Helpers run at lower priority (``NICENESS``).
"""
from .board import Board, DiskBoard, RedisBoard, open_board
from .request import ATTEMPTS, CLAIM_S, NICENESS, Request, work
from .runner import LocalHelpers, helper_main, preview, run, service_settings, summary
from .tasks import Task, plan_tasks, usable_workers

__all__ = ["ATTEMPTS", "CLAIM_S", "NICENESS", "Board", "DiskBoard", "LocalHelpers", "RedisBoard", "Request", "Task",
           "helper_main", "open_board", "plan_tasks", "preview", "run", "service_settings", "summary",
           "usable_workers", "work"]
