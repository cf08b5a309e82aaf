"""Exact Jacobian rows of single fused pixels, on receptive-field crops.

For a local model, output pixel p depends only on the inputs inside its field
``[r - up, r + down] x [c - left, c + right]``. Running the model on a window
that contains that field, whose inner edges are at least the field's reach away
from p (so the padding artefacts of the inner edges never reach p) and whose
origin is aligned to the model's stride, gives exactly the gradient of the full
image. Windows of one size are stacked into one batch and differentiated in one
backward pass (the seeds of different crops never interact).
"""
from __future__ import annotations

import contextlib
import functools
import math
import os
import threading
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from .receptive_field import (
    Field,
    _state,
    analyse,
    full_rows,
    model_device,
    model_dtype,
    pinned,
    pinning,
    plan,
    run,
    verify_replay,
    verify_shrinking,
)
from .shrinking import (
    Extent,
    ForwardRecord,
    NotRecordable,
    ReplaySource,
    ReplayWindows,
    ShrinkingWindows,
    Unsupported,
)


@dataclass
class PixelJacobian:
    """The Jacobian row of fused pixel (row, col): ``ja``, ``jb`` are H x W float32.

    ``window``: the pixel's receptive field clipped to the image, (top, bottom,
    left, right) with bottom/right exclusive (the whole image for non-local
    models). ``method``: "crop", "full-image" or "dense-cache"; ``reason`` says why
    a slower path was taken.
    """

    row: int
    col: int
    ja: np.ndarray
    jb: np.ndarray
    value: float
    window: tuple[int, int, int, int]
    method: str
    reason: str | None = None


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
    """The shrinking windows could not follow a batch (unverified use): whole crops are needed."""


@pinning
def crop_rows(model: nn.Module, a: torch.Tensor, b: torch.Tensor, pixels, field: Field,
              shrinking: bool | None = None, record: ForwardRecord | None = None, new_programs: bool = True
              ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Jacobian rows by the crop path; a, b (H, W) -> rows_a, rows_b (K, H, W) and values (K,).

    Crops of one size form one batch and one backward pass (``crop_batches``). ``shrinking``:
    run the crops with shrinking windows (``shrinking.py``: only the activations that
    reach the pixel); None uses them where ``verify_shrinking`` found them exact
    for this model and image shape, falling back to whole crops for any batch
    they cannot follow. ``record``: ``record_forward(model, a, b)``; the shrinking
    windows then replay its activations and run only backward (the caller vouches
    that ``verify_replay`` passed; a record of another model or pair raises ValueError).
    ``new_programs=False``: record no window program (``run_windows``), as in a server's request.
    """
    height, width = a.shape
    rows_a = a.new_zeros((len(pixels), height, width))
    rows_b = b.new_zeros((len(pixels), height, width))
    values = a.new_zeros(len(pixels))
    try:
        for members, windows, ga, gb, picked in crop_batches(model, a, b, pixels, field, shrinking, record,
                                                             new_programs=new_programs):
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


def crop_batches(model: nn.Module, a: torch.Tensor, b: torch.Tensor, pixels, field: Field,
                 shrinking: bool | None = None, record: ForwardRecord | None = None, corner_programs: bool = True,
                 new_programs: bool = True):
    """The crop path batch by batch (see ``crop_rows`` for the arguments): for each batch of crops of one
    geometry, ``(members, windows, ga, gb, values)``: the indices into ``pixels``, each member's window
    (top, bottom, left, right) in the image, the gradients of its fused pixel over that window
    (n, h, w) (None where the output does not depend on that input) and the pixels' values (n,).

    With shrinking windows a window is the pixel's field clipped to the image; the members of one batch
    sit at the same place in their windows unless the image is narrower than the field. Raises
    ``_WholeCrops`` where shrinking windows (``shrinking=None``) could not follow a batch.
    ``corner_programs=False``: windows clipped on two adjacent sides record no window program
    (``run_windows``): in a whole image each such geometry holds a single pixel. ``new_programs=False``:
    no window records a program.
    """
    height, width = a.shape
    if record is not None:
        record.check(model, a, b)
    strict = shrinking is not None
    if shrinking is None:
        shrinking = field.stride == 1 and verify_shrinking(model, height, width)
    if shrinking:  # the field itself, clipped to the image
        windows = [field.box(r, c, height, width) for r, c in pixels]
    else:
        windows = crop_windows(field, height, width, pixels)
    groups: dict[tuple, list[int]] = {}
    for k, (t, bt, lf, rt) in enumerate(windows):
        border = (t == 0, bt == height, lf == 0, rt == width) if shrinking else None
        groups.setdefault((bt - t, rt - lf, border), []).append(k)
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
                picked = _shrinking_pick(windows_run, ca, cb, rr, cc, strict)
            if picked is None:
                if border is not None:  # shrinking windows could not follow this batch: whole crops
                    raise _WholeCrops
                picked = run(model, ca, cb)[torch.arange(len(members)), 0, rr, cc]
            ga, gb = torch.autograd.grad(picked.sum(), (ca, cb), allow_unused=True)
            yield (members, [windows[k] for k in members], None if ga is None else ga[:, 0],
                   None if gb is None else gb[:, 0], picked.detach())


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

    state = _state(model)
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


def as_tensor(x, name: str, model: nn.Module) -> torch.Tensor:
    """An H x W array or tensor as an (H, W) tensor in the model's dtype and device (as is if it already is one)."""
    dtype, device = model_dtype(model, default=None), model_device(model)
    if isinstance(x, torch.Tensor) and x.dim() == 2 and x.is_floating_point() and x.device == device \
            and x.dtype == (dtype or x.dtype):
        return x
    x = x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)
    if x.ndim != 2:
        raise ValueError(f"{name} must be an H x W array, got shape {x.shape}")
    if dtype is None:  # no parameters: keep float64 inputs in float64, everything else in float32
        dtype = torch.float64 if x.dtype == np.float64 else torch.float32
    if x.dtype == np.float32 and dtype == torch.float32:  # the usual case: no round trip through float64
        return torch.from_numpy(np.ascontiguousarray(x)).to(device)
    return torch.as_tensor(np.ascontiguousarray(x, dtype=np.float64)).to(device, dtype)


def _check_pixels(pixels, height: int, width: int) -> list[tuple[int, int]]:
    out = []
    for r, c in pixels:
        r, c = int(r), int(c)
        if not (0 <= r < height and 0 <= c < width):
            raise IndexError(f"pixel ({r}, {c}) is outside the {height} x {width} image")
        out.append((r, c))
    return out


@pinning
def pixel_jacobians(model: nn.Module, a: np.ndarray, b: np.ndarray, pixels, method: str = "auto",
                    record: ForwardRecord | None = None, shrinking: bool | None = None,
                    new_programs: bool = True) -> list[PixelJacobian]:
    """Exact Jacobian rows of many fused pixels at once.

    Args:
        model: a fusion model, ``forward(a, b)`` on (N, 1, H, W) tensors.
        a, b: H x W arrays or tensors (MRI, PET) in [0, 1].
        pixels: iterable of (row, col).
        method: "auto" (the crop path where verified exact, else full image),
            "crop" (skip verification: the caller vouches) or "full-image".
        record: ``record_forward(model, a, b)``, the kept full-image activations:
            the crop path then runs only the backward half ("auto" uses it where
            ``verify_replay`` passed for this model and shape).
        shrinking: for the crop path: shrinking windows (True), whole crops (False) or
            shrinking windows where verified (None).
        new_programs: False records no window program (a server's request does no one-off work).
    Returns:
        one ``PixelJacobian`` per pixel, in order.
    """
    ta, tb = as_tensor(a, "a", model), as_tensor(b, "b", model)
    if ta.shape != tb.shape:
        raise ValueError(f"a and b differ in shape: {tuple(ta.shape)} vs {tuple(tb.shape)}")
    height, width = ta.shape
    pixels = _check_pixels(pixels, height, width)
    reason, vouched = None, method == "crop"
    if method == "auto":
        method, field, reason = plan(model, height, width)
    elif method == "crop":
        field = analyse(model)
    elif method == "full-image":
        field, reason = None, "requested"  # no probe: the full image needs no field
    else:
        raise ValueError(f"unknown method {method!r}; use 'auto', 'crop' or 'full-image'")
    if method == "crop":
        if record is not None and not (vouched or verify_replay(model, height, width)):
            record = None
        rows_a, rows_b, values = crop_rows(model, ta, tb, pixels, field, shrinking=shrinking, record=record,
                                           new_programs=new_programs)
    else:
        rows_a, rows_b, values = full_rows(model, ta, tb, pixels)
    rows_a = rows_a.detach().to("cpu", torch.float32).numpy()
    rows_b = rows_b.detach().to("cpu", torch.float32).numpy()
    values = values.detach().to("cpu", torch.float64).numpy()
    results = []
    for k, (r, c) in enumerate(pixels):
        window = field.box(r, c, height, width) if method == "crop" else (0, height, 0, width)
        results.append(PixelJacobian(r, c, rows_a[k], rows_b[k], float(values[k]), window, method, reason))
    return results


def pixel_jacobian(model: nn.Module, a: np.ndarray, b: np.ndarray, row: int, col: int
                   ) -> tuple[np.ndarray, np.ndarray]:
    """dF(row, col)/da and dF(row, col)/db: two H x W float32 arrays, exact.

    Example:
        >>> ja, jb = pixel_jacobian(model, a, b, row=128, col=100)
    """
    result = pixel_jacobians(model, a, b, [(row, col)])[0]
    return result.ja, result.jb
