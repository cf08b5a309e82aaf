"""A Compute request, fanned out: the job's process, helper processes here or Celery workers elsewhere.

The background job (``features.dense.run_dense``) calls ``compute``, and "Compute all samples"
(``features.cohort.run_cohort``) calls ``compute_units``: both ``fusion.fanout.run`` with the job's
own key as the request id, so that the page's Cancel (``cancel``, from the web process) reaches
every task of the request wherever it runs. Locally the helpers are processes of the job (killed
with it); with ``REDIS_URL`` they are Celery tasks (``HELPER_TASK``) that any idle worker takes, and
the board is Redis.
"""
from __future__ import annotations

import uuid
from collections.abc import Callable

from fusion import fanout

from . import backend
from .config import Config

#: The Celery task a Compute sends to idle workers (registered by ``register_celery``).
HELPER_TASK = "fusion.dense_helper"


def board(config: Config):
    """Where a request's processes meet: Redis with Celery, else beside the service cache."""
    if config.redis_url:
        return fanout.RedisBoard(config.redis_url)
    return fanout.DiskBoard(backend.service().cache_dir / "fanout")


def register_celery(celery_app) -> None:
    """Register ``HELPER_TASK`` on the app (web processes send it, workers run it)."""
    @celery_app.task(name=HELPER_TASK, bind=True, acks_late=True, reject_on_worker_lost=True)
    def dense_helper(task, settings: dict, board_spec: dict, request_id: str) -> int:
        return fanout.helper_main(settings, board_spec, request_id, where=task.request.hostname)


def celery_helpers(request, count: int) -> None:
    """Ask ``count`` Celery workers to help (those that come when nothing is left just return)."""
    from celery import current_app

    settings = fanout.service_settings(backend.service())
    for _ in range(count):
        current_app.send_task(HELPER_TASK, args=[settings, request.board.spec, request.id])


def compute(models: list[str], pair_id: str, request_id: str | None,
            report: Callable[[dict[str, dict], Callable[[], tuple[str, dict] | None]], None]) -> dict[str, dict]:
    """Whole-image maps of ``models`` on the pair, into the shared cache; returns {model: state}.

    ``report(states, preview)`` now and then: states {model: {"state", "done", "total"[, "error"]}}
    ("queued", "computing", "done", "failed"); ``preview()`` reads the preview (model, maps H x W, NaN
    where unknown) of the model that is furthest along, or None (called only when it is shown).
    """
    service = backend.service()
    height, width = service.get_pair(pair_id)[0].shape
    states = {m: {"state": "done"} if service.has_dense(m, pair_id) else {"state": "queued"} for m in models}

    def progress(request, summary: dict) -> None:
        for (model, _), unit in summary.items():
            state = {"done": "done", "failed": "failed", "computing": "computing"}.get(unit["state"], "queued")
            states[model] = {"state": state, "done": unit["done"], "total": max(unit["total"], 1)}
            if unit["error"]:
                states[model]["error"] = unit["error"]
        computing = [m for m, s in states.items() if s["state"] == "computing"]

        def preview() -> tuple[str, dict] | None:
            if not computing:
                return None
            model = max(computing, key=lambda m: states[m]["done"] / states[m]["total"])
            maps = fanout.preview(request, model, pair_id, height, width)
            return (model, maps) if maps is not None else None

        report(dict(states), preview)

    todo = [(m, pair_id) for m, s in states.items() if s["state"] != "done"]
    if todo:
        fan_out(todo, request_id, progress, previews=True)
    return states


def compute_units(units: list[tuple[str, str]], request_id: str | None,
                  report: Callable[[dict[tuple[str, str], dict]], None]) -> dict[tuple[str, str], dict]:
    """Whole-image maps of every (model, pair id) of ``units``, into the shared cache; returns {unit: state}.

    A unit already cached is "cached" from the start and never planned (so a second run computes
    nothing); the others go through one fan-out request: "queued", "computing", then "done" or
    "failed" (with "error"), with "done" and "total" in output pixels. ``report(states)`` now and then.
    """
    service = backend.service()
    states = {u: {"state": "cached"} if service.has_dense(*u) else {"state": "queued", "done": 0, "total": 1}
              for u in dict.fromkeys(units)}

    def progress(_request, summary: dict) -> None:
        for unit, s in summary.items():
            state = {"done": "done", "failed": "failed", "computing": "computing"}.get(s["state"], "queued")
            states[unit] = {"state": state, "done": s["done"], "total": max(s["total"], 1)}
            if s["error"]:
                states[unit]["error"] = s["error"]
        report(dict(states))

    todo = [u for u, s in states.items() if s["state"] != "cached"]
    report(dict(states))
    if todo:
        fan_out(todo, request_id, progress, previews=False)
    return states


def fan_out(units: list[tuple[str, str]], request_id: str | None, progress, previews: bool) -> dict:
    """``fusion.fanout.run`` of ``units`` with the dashboard's settings: ``FUSION_DENSE_WORKERS`` processes (or
    Celery workers with ``REDIS_URL``), niced, the job's board; returns its summary."""
    config, service = backend.config(), backend.service()
    return fanout.run(service, units, workers=config.dense_workers, board=board(config),
                      request_id=request_id or uuid.uuid4().hex,
                      start_helpers=celery_helpers if config.redis_url else None, progress=progress,
                      previews=previews, niceness=fanout.NICENESS)


def cancel(config: Config, request_id: str) -> None:
    """Tell every task of the request to stop (the page's Cancel; the job itself may be dead already)."""
    try:
        fanout.Request(board(config), request_id).cancel()
    except Exception:  # noqa: BLE001 - a board that cannot be reached: the job's own end stops its helpers
        pass
