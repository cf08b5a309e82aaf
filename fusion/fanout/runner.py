"""The requester's side: start helpers, compute with them, report, and end with a summary (``run``)."""
from __future__ import annotations

import multiprocessing
import os
import time
import uuid
from collections.abc import Callable

from ..processes import exit_when_orphaned, lower_priority
from ..saliency.dense import Cancelled
from .board import Board, DiskBoard, open_board
from .request import CLAIM_S, NICENESS, Request, owner_name, unpack_preview, work
from .tasks import Task, plan_tasks, usable_workers

#: How often the requester looks at the board while it waits for helpers.
POLL_S = 0.3


def service_settings(service) -> dict:
    """What a helper process needs to build the same service (cache, device, weights)."""
    checkpoint = service.checkpoint
    return {"cache_dir": str(service.cache_dir), "size_limit_bytes": service.size_limit_bytes,
            "device": str(service.device), "max_band_bytes": service.max_band_bytes,
            "checkpoint": checkpoint if checkpoint is None else str(checkpoint)}


def helper_main(settings: dict, board_spec: dict, request_id: str, owner_pid: int | None = None,
                where: str | None = None) -> int:
    """A helper's whole life: low priority, one thread, the same service, ``work`` until nothing is left.
    ``owner_pid``: end with that process; ``where``: names this helper in its claims (``owner_name``)."""
    import torch

    from ..serving import SaliencyService

    if owner_pid is not None:
        exit_when_orphaned(owner_pid)
    lower_priority(NICENESS)
    torch.set_num_threads(1)
    service = SaliencyService(**settings, hover_processes=0)
    return work(service, Request(open_board(board_spec), request_id), owner_name(where))


class LocalHelpers:
    """``count`` helper processes on this machine (forkserver where there is one, else spawn); each ends
    when no task is left, or with this process."""

    def __init__(self, service, board: Board, request_id: str, count: int):
        methods = multiprocessing.get_all_start_methods()
        self.context = multiprocessing.get_context("forkserver" if "forkserver" in methods else "spawn")
        self.args = (service_settings(service), board.spec, request_id, os.getpid())
        self.processes = []
        self.starts_left = count * 2  # a helper that died is replaced, within bounds
        for _ in range(count):
            self._start()

    def _start(self) -> None:
        process = self.context.Process(target=helper_main, args=self.args, daemon=True, name="fusion-dense")
        process.start()
        self.processes.append(process)
        self.starts_left -= 1

    def replace_dead(self) -> None:
        """Start a new helper for each one that died (not for those that finished)."""
        for process in list(self.processes):
            if not process.is_alive() and process.exitcode not in (0, None):
                self.processes.remove(process)
                if self.starts_left > 0:
                    self._start()

    def stop(self) -> None:
        for process in self.processes:
            if process.is_alive():
                process.kill()
        for process in self.processes:
            process.join(5)


def stalled(request: Request) -> bool:
    """Are tasks left that nobody holds while nobody works (every helper gone)?"""
    states = [request.state(task) for task in request.tasks]
    left = [s for s in states if not s["done"] and not s["failed"]]
    return bool(left) and not any(s["held"] for s in left)


def summary(request: Request) -> dict:
    """{(model, pair_id): {"state", "done", "total", "error"}}: "waiting", "computing", "done" or "failed";
    done/total in output pixels."""
    units: dict[tuple[str, str], dict] = {}
    for task in request.tasks:
        state = request.state(task)
        unit = units.setdefault(task.unit, {"state": "waiting", "done": 0, "total": 0, "error": None, "started": False})
        done, total = state["progress"]
        unit["total"] += task.pixels
        unit["done"] += task.pixels if state["done"] else int(task.pixels * min(done / max(total, 1), 1.0))
        unit["started"] |= bool(state["held"] or state["done"] or done)
        if state["failed"]:
            unit["error"] = unit["error"] or state["failed"]
    for key, unit in units.items():
        merged = request.merged(key)
        if unit["error"] or isinstance(merged, str):
            unit["state"], unit["error"] = "failed", unit["error"] or merged
        elif merged is True:
            unit["state"], unit["done"] = "done", unit["total"]
        elif unit["started"]:
            unit["state"] = "computing"
        del unit["started"]
    return units


def preview(request: Request, model: str, pair_id: str, height: int, width: int) -> dict | None:
    """The unit's preview maps (H x W, NaN where unknown) from its blocks' latest previews, or None."""
    import numpy as np

    maps = None
    for task in request.unit_tasks((model, pair_id)):
        blob = request.preview(task)
        if blob is None:
            continue
        part = unpack_preview(blob)
        if maps is None:
            maps = {name: np.full((height, width), np.nan, np.float32) for name in part}
        for name, values in part.items():
            maps[name][task.top:task.bottom] = values
    return maps


def run(service, units, workers: int | None = None, board: Board | None = None,
        request_id: str | None = None, start_helpers: Callable[[Request, int], object] | None = None,
        progress: Callable[[Request, dict], None] | None = None, cancel: Callable[[], bool] | None = None,
        previews: bool = False, niceness: int | None = None, participate: bool = True) -> dict:
    """Whole-image maps of every (model, pair id) of ``units``, into the service's cache.

    Args:
        workers: processes computing at once, this one included (default: the usable cores; on a GPU
            always 1: this process computes one task at a time on it).
        board: where the processes meet (default: a ``DiskBoard`` beside the service's cache).
        start_helpers: ``start_helpers(request, n)`` starts ``n`` helpers elsewhere (Celery); default:
            ``n`` local processes (``LocalHelpers``).
        progress: ``progress(request, summary)`` now and then; ``cancel()``: True stops every task.
        previews: blocks publish preview maps (``preview``) while they compute.
        niceness: lower this process's priority too (a server's job).
        participate: compute tasks here too (else only coordinate: ``workers`` helpers are started, and
            one more whenever free tasks are left with nobody working, e.g. after a helper died).
    Returns:
        ``summary(request)`` at the end: every unit "done" or "failed" (with its error).
    Raises:
        ``Cancelled`` when ``cancel()`` said so.
    """
    workers = usable_workers() if workers is None else max(1, int(workers))
    if service.device.type != "cpu":
        workers = 1  # one task per GPU at a time: this process, whole units (``plan_tasks``)
    if niceness is not None:
        lower_priority(niceness)
    tasks: list[Task] = plan_tasks(service, units, workers)
    board = board or DiskBoard(service.cache_dir / "fanout")
    request = Request(board, request_id or uuid.uuid4().hex, tasks, previews)
    owner = owner_name()
    count = min(workers, len(tasks)) - (1 if participate else 0)

    local: list[LocalHelpers] = []

    def more_helpers(n: int) -> None:
        if start_helpers is not None:
            start_helpers(request, n)
        else:
            local.append(LocalHelpers(service, board, request.id, n))

    if count > 0:
        more_helpers(count)
    last, dispatched = [0.0], time.monotonic()

    def look() -> None:
        if cancel is not None and cancel():
            request.cancel()
        now = time.monotonic()
        if progress is not None and now - last[0] >= POLL_S:
            last[0] = now
            progress(request, summary(request))

    try:
        while True:
            look()
            if request.cancelled():
                raise Cancelled("cancelled")
            if participate:
                work(service, request, owner, on_progress=look)
            elif time.monotonic() - dispatched > CLAIM_S and stalled(request):
                dispatched = time.monotonic()
                more_helpers(1)
            for unit in dict.fromkeys(task.unit for task in tasks):
                request.try_merge(service, unit, owner)  # one whose merger died
            result = summary(request)
            if all(unit["state"] in ("done", "failed") for unit in result.values()):
                if progress is not None:
                    progress(request, result)
                return result
            for helpers in local:
                helpers.replace_dead()
            time.sleep(POLL_S)
    except BaseException:
        request.cancel()  # helpers stop at their next chunk
        raise
    finally:
        for helpers in local:
            helpers.stop()
