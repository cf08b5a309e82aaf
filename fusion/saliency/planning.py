"""Planning a model at an image shape: which exact path to take, and preparing it.

``plan`` gives the hover path (``Method.CROPS`` where ``verify`` passed, else ``FULL_IMAGE``), with the probed
field and the reason; ``replay_pays`` times whether replaying kept activations beats computing the
shrinking windows; ``record_windows`` records the window programs of an image shape ahead of use.
"""
from __future__ import annotations

import itertools
import math
import time
from concurrent.futures import ThreadPoolExecutor

import torch
from torch import nn

from .crops import crop_rows, single_thread
from .field import Field, analyse
from .methods import Method
from .programs import run_windows
from .replay import ForwardRecord, record_forward
from .state import model_device, model_dtype, model_state, pinned
from .verification import representative, verification_case, verify, verify_replay, verify_shrinking


def replay_pays(model: nn.Module, height: int, width: int, concurrent: int = 2, repeats: int = 3) -> bool:
    """Is a hover faster replaying kept activations than computing its shrinking windows? (timed once, memoised)

    Both are exact (``verify_replay``); which is faster depends on the model and the
    machine: replaying skips the forward convolutions but adds a Python step (which
    holds the GIL) to each one's backward. Timed as the service hovers: single-pixel
    hovers near the centre of the verification pair, ``concurrent`` threads at once (2:
    the models of one hover share a process; 1: a worker process hovers one model at a
    time), the two ways alternately, best of ``repeats``.
    """
    state = model_state(model)
    key = (height, width, concurrent)
    smaller = representative(model, height, width)  # a hover's cost depends on its window, not on the image
    if key not in state.replay_pays and smaller is not None:
        state.replay_pays[key] = replay_pays(model, *smaller, concurrent, repeats)
    if key not in state.replay_pays:
        pays = verify_replay(model, height, width)
        if pays:
            a, b, _, _ = verification_case(model, height, width)
            record, field = record_forward(model, a, b), analyse(model)
            pixels = [(min(max(height // 2 + dr, 0), height - 1), min(max(width // 2 + dc, 0), width - 1))
                      for dr, dc in ((0, 0), (1, -2), (-3, 1))]

            def hovers(replay: bool) -> None:
                for pixel in pixels:
                    crop_rows(model, a, b, [pixel], field, shrinking=True, record=record if replay else None)

            best = {False: math.inf, True: math.inf}
            with single_thread(), ThreadPoolExecutor(concurrent) as pool:
                for _, replay in itertools.product(range(repeats + 1), (False, True)):  # one more round: warm-up
                    start = time.perf_counter()
                    list(pool.map(hovers, [replay] * concurrent))
                    best[replay] = min(best[replay], time.perf_counter() - start)
            pays = best[True] < best[False]
        state.replay_pays[key] = pays
    return state.replay_pays[key]


def plan(model: nn.Module, height: int, width: int) -> tuple[Method, Field, str | None]:
    """(``Method.CROPS`` or ``Method.FULL_IMAGE``, field, reason) for this model at this image shape."""
    field = analyse(model)
    ok, reason = verify(model, height, width)
    return (Method.CROPS if ok else Method.FULL_IMAGE), field, reason


def _axis_geometries(reach_before: int, reach_after: int, n: int) -> dict[tuple[int, bool, bool], int]:
    """{(window length, starts on the border, ends on the border): a position with that window} along one axis."""
    out = {}
    for pos in range(n):
        start, end = max(pos - reach_before, 0), min(pos + reach_after + 1, n)
        out.setdefault((end - start, start == 0, end == n), pos)
    return out


def record_windows(model: nn.Module, height: int, width: int, limit: int = 256,
                   record: ForwardRecord | None = None, batch_sizes: tuple[int, ...] = (1,)) -> int:
    """Record ahead of use the window programs (``run_windows``) of single-pixel hovers on an image of
    ``height`` x ``width``: the interior's and every one along the four edges (corner windows are
    recorded at first use); with ``record`` (of this shape), those of hovers replaying it. For each
    larger batch size in ``batch_sizes``, the interior's program of that many hovers at once. A no-op
    unless the shrinking windows are verified for this shape. Returns how many programs it ran
    (recorded now or before).
    """
    if not verify_shrinking(model, height, width):
        return 0
    field = analyse(model)
    rows = _axis_geometries(field.up, field.down, height)
    cols = _axis_geometries(field.left, field.right, width)
    middle_row = max(rows.values(), key=lambda pos: min(pos, height - 1 - pos))  # the most interior position
    middle_col = max(cols.values(), key=lambda pos: min(pos, width - 1 - pos))
    pixels = [(r, middle_col) for r in rows.values()] + [(middle_row, c) for c in cols.values()]
    runs = [((r, c), 1) for r, c in list(dict.fromkeys(pixels))[:limit]]
    runs += [((middle_row, middle_col), n) for n in sorted(set(batch_sizes) - {1})]
    dtype, device = model_dtype(model), model_device(model)
    with pinned(model), torch.enable_grad():  # as a hover runs them: a model may look at requires_grad
        for (r, c), n in runs:
            top, bottom, left, right = field.box(r, c, height, width)
            a, b = (torch.zeros(n, 1, bottom - top, right - left, dtype=dtype, device=device, requires_grad=True)
                    for _ in "ab")
            run_windows(model, (top == 0, bottom == height, left == 0, right == width), a, b,
                        record=record, origins=[(top, left)] * n)
    return len(runs)
