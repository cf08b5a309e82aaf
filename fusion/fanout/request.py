"""One request on a board, and the loop every process working on it runs (``work``)."""
from __future__ import annotations

import io
import os
import socket
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict

import numpy as np

from ..processes import renewing
from ..saliency.dense import Cancelled
from .board import Board
from .tasks import Task

#: Times a task is taken in all (once, and once more after its worker died).
ATTEMPTS = 2
#: A claim lasts this long unless renewed; its holder renews it every ``RENEW_S`` while it computes.
CLAIM_S, RENEW_S = 20.0, 4.0
#: Niceness of the processes that compute whole images: the lowest priority, so that the web process
#: and its hover workers (niceness 0) take a core from them at once (CFS weight 1024 against 15).
NICENESS = 19
#: A board entry of a request outlives it by this long (then the board forgets it).
KEEP_S = 24 * 3600


# ------------------------------------------------------------------ the loop every worker runs
class Request:
    """One request's tasks and state on a board (shared by every process working on it)."""

    def __init__(self, board: Board, request_id: str, tasks: list[Task] | None = None, previews: bool = False):
        self.board, self.id = board, request_id
        if tasks is not None:
            board.put(self._name("tasks"), {"tasks": [asdict(t) for t in tasks], "previews": previews}, KEEP_S)
        stored = board.get(self._name("tasks")) or {"tasks": [], "previews": False}
        self.tasks = [Task(**t) for t in stored["tasks"]]
        self.previews = stored["previews"]

    def _name(self, *parts) -> str:
        return "/".join(("fanout", self.id, *parts))

    def cancel(self) -> None:
        self.board.put(self._name("cancelled"), True, KEEP_S)

    def cancelled(self) -> bool:
        return bool(self.board.get(self._name("cancelled")))

    def state(self, task: Task) -> dict:
        """{"done", "failed" (message or None), "attempts", "held" (owner or None), "by" (who finished it),
        "progress" ([done, total])}."""
        get = self.board.get
        return {"done": bool(get(self._name(task.key, "done"))), "failed": get(self._name(task.key, "failed")),
                "attempts": int(get(self._name(task.key, "attempts")) or 0), "held": get(self._name(task.key, "claim")),
                "by": get(self._name(task.key, "by")), "progress": get(self._name(task.key, "progress")) or [0, 1]}

    def claim(self, task: Task, owner: str) -> bool:
        """Take ``task`` if it is free and has attempts left (a task out of attempts is marked failed)."""
        state = self.state(task)
        if state["done"] or state["failed"] or state["held"]:
            return False
        if state["attempts"] >= ATTEMPTS:
            self.fail(task, f"its worker stopped {state['attempts']} times (killed, or out of memory)")
            return False
        if not self.board.add(self._name(task.key, "claim"), owner, CLAIM_S):
            return False
        self.board.put(self._name(task.key, "attempts"), state["attempts"] + 1, KEEP_S)
        return True

    def renew(self, task: Task, owner: str) -> None:
        if self.board.get(self._name(task.key, "claim")) == owner:
            self.board.put(self._name(task.key, "claim"), owner, CLAIM_S)

    def release(self, task: Task) -> None:
        self.board.delete(self._name(task.key, "claim"))

    def progress(self, task: Task, done: int, total: int, preview: bytes | None = None) -> None:
        self.board.put(self._name(task.key, "progress"), [int(done), max(int(total), 1)], KEEP_S)
        if preview is not None:
            self.board.put(self._name(task.key, "preview"), preview, KEEP_S)

    def preview(self, task: Task) -> bytes | None:
        return self.board.get(self._name(task.key, "preview"))

    def finish(self, task: Task, owner: str) -> None:
        self.board.put(self._name(task.key, "done"), True, KEEP_S)
        self.board.put(self._name(task.key, "by"), owner, KEEP_S)
        self.release(task)

    def fail(self, task: Task, message: str) -> None:
        self.board.put(self._name(task.key, "failed"), message, KEEP_S)
        self.release(task)

    def unit_tasks(self, unit: tuple[str, str]) -> list[Task]:
        return [t for t in self.tasks if t.unit == unit]

    def merged(self, unit: tuple[str, str]):
        """None until the unit is merged (or failed to merge): then True or the failure's message."""
        return self.board.get(self._name("merged", *unit))

    def try_merge(self, service, unit: tuple[str, str], owner: str) -> None:
        """Merge the unit if all its blocks are done and nobody merged or merges it."""
        tasks = self.unit_tasks(unit)
        if self.merged(unit) is not None or not all(self.state(t)["done"] for t in tasks):
            return
        if not self.board.add(self._name("merging", *unit), owner, CLAIM_S * 30):
            return
        try:
            service.merge_rows(*unit, [(t.top, t.bottom) for t in tasks])
            outcome = True
        except Exception as exc:  # noqa: BLE001 - reported on the page / command line, never raised there
            outcome = f"{type(exc).__name__}: {exc}"
        self.board.put(self._name("merged", *unit), outcome, KEEP_S)


def owner_name(where: str | None = None) -> str:
    """Who holds a claim: "WHERE:pid-random" (unique per call); WHERE defaults to the host name (a Celery
    worker gives its node name)."""
    return f"{where or socket.gethostname()}:{os.getpid()}-{uuid.uuid4().hex[:8]}"


def work(service, request: Request, owner: str | None = None, on_progress: Callable[[], None] | None = None) -> int:
    """Compute free tasks of ``request`` until none is left to take; returns how many this call did.

    ``on_progress()`` is called now and then (the requester reports from there).
    """
    owner = owner or owner_name()
    did = 0
    for task in request.tasks:
        if request.cancelled():
            break
        if not request.claim(task, owner):
            continue
        run_task(service, request, task, owner, on_progress)
        did += 1
        request.try_merge(service, task.unit, owner)
    return did


def run_task(service, request: Request, task: Task, owner: str, on_progress=None) -> None:
    """Compute one claimed task, renewing its claim, reporting progress; marks it done or failed."""
    last = [0.0, 0.0]

    def progress(done, total, preview=None) -> None:
        now = time.monotonic()
        if now - last[0] >= 0.5 or done >= total:
            last[0] = now
            packed = None
            if preview is not None and request.previews and now - last[1] >= 1.0:
                last[1] = now
                packed = pack_preview(preview)
            request.progress(task, done, total, packed)
            if on_progress is not None:
                on_progress()

    def cancelled() -> bool:
        return request.cancelled()

    try:
        with renewing(lambda: request.renew(task, owner), RENEW_S, "claim-renewal"):
            service.dense_rows(task.model, task.pair_id, task.top, task.bottom, progress=progress,
                               cancel=cancelled)
    except Cancelled:
        request.release(task)
        return
    except Exception as exc:  # noqa: BLE001 - a task's error is reported, the others go on
        request.fail(task, f"{type(exc).__name__}: {exc}")
        return
    request.progress(task, task.pixels, task.pixels)
    request.finish(task, owner)


def pack_preview(preview: dict[str, np.ndarray]) -> bytes:
    """A block's preview maps as bytes for the board (float16: a preview needs no more)."""
    buffer = io.BytesIO()
    np.savez(buffer, **{k: v.astype(np.float16) for k, v in preview.items()})
    return buffer.getvalue()


def unpack_preview(blob: bytes) -> dict[str, np.ndarray]:
    with np.load(io.BytesIO(blob), allow_pickle=False) as data:
        return {k: data[k].astype(np.float32) for k in data.files}
