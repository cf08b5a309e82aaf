"""Recorded shrinking-window programs, kept per model and window geometry.

``run_windows`` runs a batch of shrinking windows (or replays kept activations, ``replay.py``)
and records the run as a ``WindowProgram`` the first time a window geometry is seen; later runs
of that geometry replay the program without the tracking mode. Programs live in the model's memo
(``state.model_state``) and so belong to one state of its weights; ``recorded_programs`` shows them.
"""
from __future__ import annotations

import torch
from torch import nn

from .replay import ForwardRecord, ReplaySource, ReplayWindows
from .state import model_state
from .windows import Extent, NotRecordable, ShrinkingWindows

#: Recorded window programs kept per model (one per window shape and border; LRU).
MAX_PROGRAMS = 512


def run_windows(model: nn.Module, border: tuple[bool, bool, bool, bool], a: torch.Tensor, b: torch.Tensor,
                record: ForwardRecord | None = None, origins=None, new_program: bool = True
                ) -> tuple[torch.Tensor, Extent]:
    """``ShrinkingWindows(border).run(model, a, b)`` for windows a, b (N, 1, h, w), without its per-operation
    cost; with ``record`` (and ``origins``, each window's (top, left) in the image), ``ReplayWindows``'s.

    The first run of a window geometry (shape, border, dtype, device; replay or not) is
    recorded (``ShrinkingWindows(..., recording=True)``); its program is replayed once on
    the same windows and kept only if that gives a bit-identical output. Later runs of that
    geometry replay it. Models that read values of their activations always run under the mode.
    ``new_program=False``: a geometry without a program runs under the mode and records none (for a
    geometry used once, recording costs more than it saves).
    """
    def windows(recording: bool = False) -> ShrinkingWindows:
        if record is None:
            return ShrinkingWindows(border, recording)
        return ReplayWindows(border, record, origins, recording)

    state = model_state(model)
    key = (tuple(a.shape), border, a.dtype, a.device, None if record is None else tuple(record.fused.shape))
    with state.lock:
        program = state.programs.get(key, False)
        if program is not False:
            state.programs.move_to_end(key)
    if program is None:
        return windows().run(model, a, b)
    if program is not False:
        return program.run(a, b, None if record is None else ReplaySource(record, origins))
    if not new_program:
        return windows().run(model, a, b)
    recorder = windows(recording=True)
    try:
        out, extent = recorder.run(model, a, b)
        program = recorder.program(out, extent)
    except NotRecordable:
        out, extent = windows().run(model, a, b)
        program = None
    else:
        with torch.no_grad():
            again, _ = program.run(a.detach().clone(), b.detach().clone(), recorder.source)
        if not torch.equal(again, out.detach()):
            program = None
    with state.lock:
        state.programs[key] = program
        while len(state.programs) > MAX_PROGRAMS:
            state.programs.popitem(last=False)
    return out, extent


def recorded_programs(model: nn.Module) -> dict:
    """The window programs recorded for this model's current weights, oldest use first (a copy).

    Keys: (window batch shape (N, 1, h, w), border (top, bottom, left, right), dtype, device, the
    replayed record's image shape or None); values: the ``WindowProgram``, or None where the geometry
    ran but could not be recorded (or the recording was not bit-identical).
    """
    state = model_state(model)
    with state.lock:
        return dict(state.programs)
