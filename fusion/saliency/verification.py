"""Checks of the fast paths against full-image autograd, once per model and image shape (memoised).

``verify`` checks the receptive-field crop, ``verify_shrinking`` the shrinking windows and
``verify_replay`` their replay of kept activations: each compares a random weighted sum of the
Jacobian rows of the four corners, the centre and random pixels with one full-image backward pass
(``disagreement``). A large image is checked on a smaller one with the same window geometries
(``field.representative_shape``), so that checking costs what it checks, not the image. The
verdicts live in the model's memo (``state.model_state``); ``remember_verdict`` installs verdicts
derived elsewhere (another process, a cache). ``compare_with_autograd`` checks given Jacobian rows the
same way (the rows of a whole-image result).
"""
from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch import nn

from .crops import crop_rows
from .field import analyse, representative_shape
from .reference import corner_pixels, full_rows
from .replay import record_forward
from .state import model_device, model_dtype, model_state
from .windows import Unsupported

#: Relative tolerance of the float64 verification against full-image autograd.
VERIFY_RTOL = 1e-9
#: The same for float32 models (summation order differs between crop and full image).
VERIFY_RTOL_FLOAT32 = 1e-4


def remember_verdict(model: nn.Module, height: int, width: int, verdict: tuple[bool, str | None],
                     shrinking: bool | None = None, replay: bool | None = None,
                     replay_faster: dict[int, bool] | None = None) -> None:
    """Install verification verdicts (and the timings of ``replay_pays``, by hovers at once) derived
    elsewhere for this model instance and image shape."""
    state = model_state(model)
    state.verdicts[(height, width)] = (bool(verdict[0]), verdict[1])
    if shrinking is not None:
        state.shrinking[(height, width)] = bool(shrinking)
    if replay is not None:
        state.replay[(height, width)] = bool(replay)
    for concurrent, faster in (replay_faster or {}).items():
        state.replay_pays[(height, width, int(concurrent))] = bool(faster)


def representative(model: nn.Module, height: int, width: int) -> tuple[int, int] | None:
    """``representative_shape`` of a local model where it is smaller than the image, else None."""
    field = analyse(model)
    if not field.local:
        return None
    shape = representative_shape(field, height, width)
    return None if shape == (height, width) else shape


def verification_case(model: nn.Module, height: int, width: int):
    """A random pair (H, W), the corner/centre pixels and random weights, in the model's dtype and device."""
    dtype, device = model_dtype(model), model_device(model)
    gen = torch.Generator().manual_seed(4321)
    a, b = (torch.rand(height, width, dtype=torch.float64, generator=gen).to(device, dtype) for _ in "ab")
    pixels = corner_pixels(height, width)
    weights = torch.rand(len(pixels), dtype=torch.float64, generator=gen).to(device, dtype) + 0.5
    return a, b, pixels, weights


def disagreement(model: nn.Module, height: int, width: int, rows) -> float | None:
    """Relative error of ``rows(a, b, pixels) -> (rows_a, rows_b, values)`` against full-image autograd.

    Compares sum_k w_k dF(p_k)/d(a, b) (random weights w_k; pixels p_k: the four
    corners, the centre and two random pixels) from one full-image backward pass
    with the same sum from ``rows``. Returns None when within tolerance.
    """
    a, b, pixels, weights = verification_case(model, height, width)
    want_a, want_b, _ = full_rows(model, a, b, pixels, weights)
    got_a, got_b, _ = rows(a, b, pixels)
    rtol = VERIFY_RTOL if a.dtype == torch.float64 else VERIFY_RTOL_FLOAT32
    worst = 0.0
    for want, got in ((want_a[0], (got_a * weights[:, None, None]).sum(0)),
                      (want_b[0], (got_b * weights[:, None, None]).sum(0))):
        scale = max(float(want.abs().max()), float(got.abs().max()), 1e-30)
        worst = max(worst, float((want - got).abs().max()) / scale)
    return worst if worst > rtol else None


def relative_error(want: np.ndarray, got: np.ndarray) -> float:
    """Largest |want - got| over the larger of the two arrays' largest |value|."""
    return float(np.abs(want - got).max() / max(np.abs(want).max(), np.abs(got).max(), 1e-30))


def compare_with_autograd(model: nn.Module, a: torch.Tensor, b: torch.Tensor, pixels: list[tuple[int, int]],
                          row: Callable[[int, int], tuple[np.ndarray, np.ndarray]], label: str) -> str | None:
    """Compare the Jacobian rows ``row(r, c)`` (two H x W arrays) at ``pixels`` with full-image autograd on
    the (H, W) tensors ``a``, ``b``; None when they agree, else what disagrees (naming ``label``).

    One backward pass checks every pixel: it compares sum_k w_k dF(p_k)/d(a, b) with the same sum of
    the given rows, where w_k is a random number in [0.5, 1.5) over the largest value of row k, so that
    each pixel counts at its own scale (a row off by a relative error e moves the sum by about e of
    its largest value). Only when the sums disagree is each pixel compared alone (one backward pass
    each), which names the pixel, or clears the sum if every pixel agrees on its own.
    """
    rtol = max(VERIFY_RTOL if a.dtype == torch.float64 else VERIFY_RTOL_FLOAT32, 1e-6)
    have = [tuple(np.asarray(x, np.float64) for x in row(r, c)) for r, c in pixels]
    rng = np.random.default_rng(8765)
    weights = np.array([(0.5 + rng.random()) / max(np.abs(ra).max(), np.abs(rb).max(), 1e-12) for ra, rb in have])
    want_a, want_b, _ = full_rows(model, a, b, pixels, torch.from_numpy(weights).to(a.device, a.dtype))
    worst = 0.0
    for want, got in ((want_a[0], sum(w * ra for w, (ra, _) in zip(weights, have, strict=True))),
                      (want_b[0], sum(w * rb for w, (_, rb) in zip(weights, have, strict=True)))):
        want = want.detach().cpu().double().numpy()
        worst = max(worst, relative_error(want, got))
    if worst <= rtol:
        return None
    want_a, want_b, _ = full_rows(model, a, b, pixels)
    for k, (r, c) in enumerate(pixels):
        for want, got in zip((want_a[k], want_b[k]), have[k], strict=True):
            want = want.detach().cpu().double().numpy()
            err = relative_error(want, got)
            if err > rtol:
                return (f"the {label} Jacobian disagrees with full-image autograd at pixel ({r}, {c}) "
                        f"(relative error {err:.2g})")
    return None


def verify(model: nn.Module, height: int, width: int) -> tuple[bool, str | None]:
    """Does the crop path equal full-image autograd for this model at this image shape? (memoised)

    Returns (ok, reason when not ok).
    """
    state = model_state(model)
    key = (height, width)
    if key in state.verdicts:
        return state.verdicts[key]
    field = analyse(model)
    smaller = representative(model, height, width)
    if not field.local:
        verdict = (False, field.reason)
    elif smaller is not None:
        verdict = verify(model, *smaller)
    else:
        err = disagreement(model, height, width,
                            lambda a, b, pixels: crop_rows(model, a, b, pixels, field, shrinking=False))
        verdict = (True, None) if err is None else (False, (
            f"the receptive-field crop disagrees with full-image autograd (relative error {err:.2g} at the "
            f"corners and centre of a {height} x {width} image): the model is not local or not aligned as probed"))
    state.verdicts[key] = verdict
    return verdict


def verify_shrinking(model: nn.Module, height: int, width: int) -> bool:
    """May crops run with shrinking windows (``windows.py``) for this model and shape? (memoised)

    Only where the plain crop path is verified, the stride is 1, the model runs
    under the shrinking windows without an unsupported operation, and the result
    equals full-image autograd at the corners and centre.
    """
    state = model_state(model)
    key = (height, width)
    smaller = representative(model, height, width)
    if key not in state.shrinking and smaller is not None:
        state.shrinking[key] = verify_shrinking(model, *smaller)
    if key not in state.shrinking:
        field = analyse(model)
        state.shrinking[key] = field.local and field.stride == 1 and verify(model, height, width)[0] and _agrees(
            model, height, width, lambda a, b, pixels: crop_rows(model, a, b, pixels, field, shrinking=True))
    return state.shrinking[key]


def _agrees(model: nn.Module, height: int, width: int, rows) -> bool:
    """Does a shrinking-window path ``rows`` (see ``disagreement``) follow the model and equal full-image autograd?"""
    try:
        return disagreement(model, height, width, rows) is None
    except Unsupported:
        return False


def verify_replay(model: nn.Module, height: int, width: int) -> bool:
    """May hovers replay kept full-image activations (``record_forward``) for this model and shape? (memoised)

    Only where the shrinking windows are verified, the model's full-image forward
    pass can be recorded, and replaying it equals full-image autograd at the
    corners and centre.
    """
    state = model_state(model)
    key = (height, width)
    smaller = representative(model, height, width)
    if key not in state.replay and smaller is not None:
        state.replay[key] = verify_replay(model, *smaller)
    if key not in state.replay:
        field = analyse(model)

        def replayed(a, b, pixels):
            return crop_rows(model, a, b, pixels, field, shrinking=True, record=record_forward(model, a, b))

        state.replay[key] = verify_shrinking(model, height, width) and _agrees(model, height, width, replayed)
    return state.replay[key]
