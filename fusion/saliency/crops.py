"""Exact Jacobian rows of fused pixels on receptive-field crops, batched by window geometry.

For a local model, output pixel p depends only on the inputs inside its field
``[r - up, r + down] x [c - left, c + right]``. Running the model on a window
that contains that field, whose inner edges are at least the field's reach away
from p (so the padding artefacts of the inner edges never reach p) and whose
origin is aligned to the model's stride, gives exactly the gradient of the full
image. Windows of one size are stacked into one batch and differentiated in one
backward pass (the seeds of different crops never interact). With shrinking
windows (``windows.py``) a window is the pixel's field itself and each layer
computes only what reaches the pixel; their programs are recorded (``programs.py``).

Nothing here checks that a path is exact: callers choose it from the verdicts
(``verification.py``), as ``pixel_jacobians`` does.
"""
from __future__ import annotations

import contextlib
import functools
import math
import os
import threading

import torch
from torch import nn

from .field import Field
from .programs import run_windows
from .reference import run
from .replay import ForwardRecord
from .state import pinning
from .windows import Unsupported


def _axis_window(pos: int, n: int, before: int, after: int, stride: int) -> tuple[int, int]:
    """[start, end) along one axis: holds [pos - before, pos + after] ∩ [0, n), start a multiple of stride."""
    size = stride * math.ceil((before + after + stride) / stride)
    if size >= n:
        return 0, n
    start = (max(pos - before, 0) // stride) * stride
    if start + size > n:  # near the far border: end there, keep the origin aligned
        return ((n - size) // stride) * stride, n
    return start, start + size


def crop_windows(field: Field, height: int, width: int, pixels) -> list[tuple[int, int, int, int]]:
    """The crop (top, bottom, left, right), ends exclusive, for every (row, col)."""
    return [(*_axis_window(r, height, field.up, field.down, field.stride),
             *_axis_window(c, width, field.left, field.right, field.stride)) for r, c in pixels]


#: Crop batches with fewer pixels than this run on one intra-op thread: such small convolutions
#: gain nothing from a second thread, and on a busy machine OpenMP threads that wait for a
#: descheduled partner made a 5 ms crop take up to a second (measured on the 2-core CPU).
SINGLE_THREAD_PIXELS = 64 * 64 * 8
_threads_lock = threading.Lock()
_single_users = 0


def _reset_after_fork() -> None:
    """A forked child (a background job) must not inherit a lock held by a parent's hover thread."""
    global _threads_lock, _single_users
    _threads_lock, _single_users = threading.Lock(), 0


os.register_at_fork(after_in_child=_reset_after_fork)


@contextlib.contextmanager
def single_thread(active: bool = True):
    """Run torch ops on one intra-op thread inside the block (process-wide, reference counted)."""
    global _single_users
    if not active:
        yield
        return
    with _threads_lock:
        if _single_users == 0:
            single_thread.saved = torch.get_num_threads()
            torch.set_num_threads(1)
        _single_users += 1
    try:
        yield
    finally:
        with _threads_lock:
            _single_users -= 1
            if _single_users == 0:
                torch.set_num_threads(single_thread.saved)


class _WholeCrops(Exception):
    """The shrinking windows could not follow a batch (``fallback``): whole crops are needed."""


@pinning
def crop_rows(model: nn.Module, a: torch.Tensor, b: torch.Tensor, pixels, field: Field, shrinking: bool,
              record: ForwardRecord | None = None, new_programs: bool = True, fallback: bool = False
              ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Jacobian rows by the crop path; a, b (H, W) -> rows_a, rows_b (K, H, W) and values (K,).

    Crops of one size form one batch and one backward pass (``crop_batches``). ``shrinking``:
    run the crops with shrinking windows (``windows.py``: only the activations that
    reach the pixel), else whole crops; the caller vouches that the path is exact
    (``verify``, ``verify_shrinking``). ``fallback``: a batch the shrinking windows cannot
    follow runs as whole crops instead of raising ``Unsupported``. ``record``:
    ``record_forward(model, a, b)``; the shrinking windows then replay its activations and
    run only backward (the caller vouches that ``verify_replay`` passed; a record of another
    model or pair raises ValueError). ``new_programs=False``: record no window program
    (``run_windows``), as in a server's request.
    """
    height, width = a.shape
    rows_a = a.new_zeros((len(pixels), height, width))
    rows_b = b.new_zeros((len(pixels), height, width))
    values = a.new_zeros(len(pixels))
    try:
        for members, windows, ga, gb, picked in crop_batches(model, a, b, pixels, field, shrinking, record,
                                                             new_programs=new_programs, fallback=fallback):
            for j, k in enumerate(members):
                # Only the pixel's field (within its crop): the row is zero outside it by definition, and so
                # exactly zero here whatever the convolution algorithms left in the rest of a whole crop.
                top, left = windows[j][0], windows[j][2]
                t, bt, lf, rt = field.box(*pixels[k], height, width)
                inside = (slice(t - top, bt - top), slice(lf - left, rt - left))
                if ga is not None:
                    rows_a[k, t:bt, lf:rt] = ga[j][inside]
                if gb is not None:
                    rows_b[k, t:bt, lf:rt] = gb[j][inside]
            values[members] = picked
    except _WholeCrops:
        return crop_rows(model, a, b, pixels, field, shrinking=False)
    return rows_a, rows_b, values


def window_geometry(window: tuple[int, int, int, int], height: int, width: int,
                    edges: bool = True) -> tuple[int, int, tuple[bool, bool, bool, bool] | None]:
    """What one batch of ``crop_batches`` shares: the window's (top, bottom, left, right) height and width,
    and (with ``edges``: shrinking windows) which edges of the H x W image it reaches (top, bottom, left,
    right), else None.

    >>> window_geometry((0, 5, 3, 8), 20, 20)
    (5, 5, (True, False, False, False))
    """
    t, bt, lf, rt = window
    return bt - t, rt - lf, ((t == 0, bt == height, lf == 0, rt == width) if edges else None)


def crop_batches(model: nn.Module, a: torch.Tensor, b: torch.Tensor, pixels, field: Field, shrinking: bool,
                 record: ForwardRecord | None = None, corner_programs: bool = True, new_programs: bool = True,
                 fallback: bool = False):
    """The crop path batch by batch (see ``crop_rows`` for the arguments): for each batch of crops of one
    geometry, ``(members, windows, ga, gb, values)``: the indices into ``pixels``, each member's window
    (top, bottom, left, right) in the image, the gradients of its fused pixel over that window
    (n, h, w) (None where the output does not depend on that input) and the pixels' values (n,).

    With shrinking windows a window is the pixel's field clipped to the image; the members of one batch
    sit at the same place in their windows unless the image is narrower than the field. With
    ``fallback``, raises ``_WholeCrops`` where the shrinking windows could not follow a batch.
    ``corner_programs=False``: windows clipped on two adjacent sides record no window program
    (``run_windows``): in a whole image each such geometry holds a single pixel. ``new_programs=False``:
    no window records a program.
    """
    height, width = a.shape
    if record is not None:
        record.check(model, a, b)
    if shrinking:  # the field itself, clipped to the image
        windows = [field.box(r, c, height, width) for r, c in pixels]
    else:
        windows = crop_windows(field, height, width, pixels)
    groups: dict[tuple, list[int]] = {}
    for k, window in enumerate(windows):
        groups.setdefault(window_geometry(window, height, width, shrinking), []).append(k)
    work = sum(len(m) * h * w for (h, w, _), m in groups.items())
    with torch.enable_grad(), single_thread(work < SINGLE_THREAD_PIXELS):
        for (_, _, border), members in groups.items():
            crops = [[x[windows[k][0]:windows[k][1], windows[k][2]:windows[k][3]] for k in members] for x in (a, b)]
            ca, cb = (torch.stack(c)[:, None].requires_grad_(True) for c in crops)
            rr = torch.tensor([pixels[k][0] - windows[k][0] for k in members])
            cc = torch.tensor([pixels[k][1] - windows[k][2] for k in members])
            picked = None
            if border is not None:
                origins = [(windows[k][0], windows[k][2]) for k in members]
                corner = (border[0] or border[1]) and (border[2] or border[3])
                windows_run = functools.partial(run_windows, model, border, record=record, origins=origins,
                                                new_program=new_programs and (corner_programs or not corner))
                picked = _shrinking_pick(windows_run, ca, cb, rr, cc, not fallback)
            if picked is None:
                if border is not None:  # shrinking windows could not follow this batch: whole crops
                    raise _WholeCrops
                picked = run(model, ca, cb)[torch.arange(len(members)), 0, rr, cc]
            ga, gb = torch.autograd.grad(picked.sum(), (ca, cb), allow_unused=True)
            yield (members, [windows[k] for k in members], None if ga is None else ga[:, 0],
                   None if gb is None else gb[:, 0], picked.detach())


def _shrinking_pick(windows_run, ca, cb, rr, cc, strict: bool) -> torch.Tensor | None:
    """Output values at window positions (rr, cc) of ``windows_run(ca, cb) -> (out, extent)``, a run with
    shrinking windows; None if unsupported."""
    try:
        out, extent = windows_run(ca, cb)
        rr, cc = rr - extent.top, cc - extent.left
        if bool((rr < 0).any() | (cc < 0).any() | (rr >= out.shape[-2]).any() | (cc >= out.shape[-1]).any()):
            raise Unsupported("the shrunk window lost the pixel")
    except Unsupported:
        if strict:
            raise
        return None
    return out[torch.arange(len(rr)), 0, rr, cc]
