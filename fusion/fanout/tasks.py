"""What a whole-image request is made of: tasks, each output rows [top, bottom) of one model on one pair."""
from __future__ import annotations

import math
import os
from dataclasses import dataclass

from ..saliency.blocks import split_rows
from ..saliency.dense import memory_budget_bytes

#: Blocks per worker a request aims at, so that the last blocks finish close together.
TASKS_PER_WORKER = 4
#: No block is thinner than this many rows (each block repeats a forward pass over its strip).
MIN_BLOCK_ROWS = 16


@dataclass(frozen=True)
class Task:
    """Output rows [top, bottom) of ``model`` on ``pair_id``, one of ``parts`` blocks of that unit."""

    model: str
    pair_id: str
    top: int
    bottom: int
    parts: int
    width: int

    @property
    def key(self) -> str:
        return f"{self.model}/{self.pair_id}/{self.top}-{self.bottom}"

    @property
    def unit(self) -> tuple[str, str]:
        return self.model, self.pair_id

    @property
    def pixels(self) -> int:
        return (self.bottom - self.top) * self.width


def usable_workers(reserve: int = 0) -> int:
    """Cores this process may use, less ``reserve`` (at least 1)."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:
        cores = os.cpu_count() or 1
    return max(1, cores - reserve)


def plan_tasks(service, units, workers: int, memory_budget: int | None = None) -> list[Task]:
    """The tasks of the (model, pair id) ``units`` that have no cached dense result, most work first.

    A unit is split into blocks of rows when one block would need more than ``memory_budget`` bytes
    (default ``memory_budget_bytes()``), and, with several workers, so that there are about
    ``TASKS_PER_WORKER`` blocks per worker, bigger units in more blocks (blocks of at least
    ``MIN_BLOCK_ROWS`` rows unless memory needs thinner ones). A GPU takes whole units.
    """
    budget = memory_budget_bytes() if memory_budget is None else memory_budget
    shapes = {pair_id: service.get_pair(pair_id)[0].shape for _, pair_id in dict.fromkeys(units)}
    units = [(name, pair_id, *shapes[pair_id], service.dense_cost(name, *shapes[pair_id]))
             for name, pair_id in dict.fromkeys(units) if not service.has_dense(name, pair_id)]
    total = sum(unit[-1] for unit in units)
    share = total / (TASKS_PER_WORKER * workers) if workers > 1 and total else math.inf
    weighted = []
    for name, pair_id, height, width, cost in units:
        parts = 1
        if service.device.type == "cpu":
            by_memory = math.ceil(service.dense_bytes(name, height, width) / budget)
            by_balance = math.ceil(cost / share) if share < math.inf else 1
            parts = max(1, min(by_balance, height // MIN_BLOCK_ROWS), by_memory)
        weighted += [(cost * (bottom - top) / height, Task(name, pair_id, top, bottom, parts, width))
                     for top, bottom in split_rows(height, parts)]
    return [task for _, task in sorted(weighted, key=lambda item: -item[0])]
