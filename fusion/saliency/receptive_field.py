"""Receptive field, stride and locality of a fusion model: derived by probing, then verified.

Nothing here trusts a model's ``receptive_field`` attribute. ``analyse(model)``
starts from the analytic sum of ``(k - 1) * dilation`` over the Conv2d modules,
then probes a float64 copy: it back-propagates from output pixels of random
inputs and takes the bounding box of the nonzero input gradient. A support that
touches the probe border at every probe size means a global operation (the
model is then "non-local" and only the exact full-image path is used).
``verify(model, a, b)`` checks the crop path against full-image autograd on a
few pixels, including the four corners, once per (model, image shape). A large
image is checked on a smaller one with the same window geometries
(``representative_shape``), so that checking costs what it checks, not the image.
"""
from __future__ import annotations

import contextlib
import copy
import functools
import itertools
import math
import threading
import weakref
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

#: Probe sizes grow by this factor while the support touches the probe border.
PROBE_GROWTH = 2
#: Give up (declare the model non-local) once the probe is this many pixels wide.
MAX_PROBE = 160
#: Random inputs per probe; the support is the union over them.
PROBE_REPEATS = 3
#: Relative tolerance of the float64 verification against full-image autograd.
VERIFY_RTOL = 1e-9
#: The same for float32 models (summation order differs between crop and full image).
VERIFY_RTOL_FLOAT32 = 1e-4


@dataclass(frozen=True)
class Field:
    """Where one output pixel p = (r, c) looks: inputs in rows [r - up, r + down], cols [c - left, c + right].

    ``stride`` is the alignment (period) that crops must respect; ``local`` is
    False for models with a global operation, whose output pixels depend on
    the whole image (``reason`` says why).
    """

    up: int
    down: int
    left: int
    right: int
    stride: int = 1
    local: bool = True
    reason: str | None = None

    @property
    def rows(self) -> int:
        return self.up + self.down + 1

    @property
    def cols(self) -> int:
        return self.left + self.right + 1

    @property
    def size(self) -> int:
        """Side of the receptive field in pixels (the larger of its height and width)."""
        return max(self.rows, self.cols)

    def clipped(self, height: int, width: int) -> Field:
        """The same field, never wider than an image of ``height`` x ``width``."""
        return Field(min(self.up, height - 1), min(self.down, height - 1), min(self.left, width - 1),
                     min(self.right, width - 1), self.stride, self.local, self.reason)

    def box(self, row: int, col: int, height: int, width: int) -> tuple[int, int, int, int]:
        """The field around (row, col) clipped to the image: (top, bottom, left, right), ends exclusive."""
        return (max(row - self.up, 0), min(row + self.down + 1, height),
                max(col - self.left, 0), min(col + self.right + 1, width))


# ------------------------------------------------------------------ model state
class _State:
    """Per-model-instance memo: the field and the verification verdicts."""

    def __init__(self, fingerprint):
        self.fingerprint = fingerprint
        self.field: Field | None = None
        self.verdicts: dict[tuple[int, int], tuple[bool, str | None]] = {}
        self.shrinking: dict[tuple[int, int], bool] = {}
        self.replay: dict[tuple[int, int], bool] = {}
        self.replay_pays: dict[tuple[int, int, int], bool] = {}  # (H, W, hovers at once) -> faster
        self.double: nn.Module | None = None
        #: Recorded shrinking-window runs by window geometry (``pixel.run_windows``); None: not recordable.
        self.programs: OrderedDict = OrderedDict()
        self.lock = threading.Lock()
        self.dtype_device: tuple[torch.dtype | None, torch.device] | None = None


_STATES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def fingerprint(model: nn.Module) -> tuple:
    """Changes whenever a parameter or buffer is replaced or modified in place, a module switches between
    training and evaluation, or the model's own settings change.

    Cheap (no repr of the whole module tree, no ``parameters()`` generators): it runs on every hover.
    """
    modules = _modules(model)
    return (type(model).__qualname__, model.extra_repr(), tuple([m.training for m in modules]),
            tuple([(t.data_ptr(), t._version, t.shape) for t in _own_tensors(modules)]))


def _modules(model: nn.Module) -> list[nn.Module]:
    """The module tree, breadth first."""
    modules = [model]
    for module in modules:  # grows while it is walked
        modules += [m for m in module._modules.values() if m is not None]
    return modules


def _own_tensors(modules: list[nn.Module]) -> list[torch.Tensor]:
    """Every parameter and buffer of the modules."""
    found = []
    for module in modules:
        found += module._parameters.values()
        found += module._buffers.values()
    return [t for t in found if t is not None]


_PINNED = threading.local()  # .states: {id(model): _State} of the models pinned by this thread


@contextlib.contextmanager
def pinned(model: nn.Module):
    """Within the block, this thread looks the model's state up once, not at every step.

    For one hover's work on a model, which must not change its weights meanwhile:
    the fingerprint walks every parameter and buffer (0.1 to 0.2 ms per look-up).
    """
    states = _PINNED.__dict__.setdefault("states", {})
    if id(model) in states:
        yield states[id(model)]
        return
    states[id(model)] = state = _state(model)
    try:
        yield state
    finally:
        del states[id(model)]


def pinning(function):
    """Decorator: ``function(model, ...)`` runs with the model ``pinned``."""
    @functools.wraps(function)
    def pinned_call(model, *args, **kwargs):
        with pinned(model):
            return function(model, *args, **kwargs)
    return pinned_call


def _state(model: nn.Module) -> _State:
    states = getattr(_PINNED, "states", None)
    if states and id(model) in states:
        return states[id(model)]
    fp = fingerprint(model)
    state = _STATES.get(model)
    if state is None or state.fingerprint != fp:
        state = _State(fp)
        _STATES[model] = state
    return state


def _dtype_device(model: nn.Module) -> tuple[torch.dtype | None, torch.device]:
    """(the floating dtype of the first floating parameter or buffer, or None; the first one's device)."""
    state = _state(model)
    if state.dtype_device is None:
        tensors = list(itertools.chain(model.parameters(), model.buffers()))
        dtype = next((t.dtype for t in tensors if t.is_floating_point()), None)
        state.dtype_device = dtype, tensors[0].device if tensors else torch.device("cpu")
    return state.dtype_device


def model_dtype(model: nn.Module, default: torch.dtype | None = torch.float32) -> torch.dtype | None:
    """The floating dtype of the model's parameters (``default`` for parameter-free models)."""
    return _dtype_device(model)[0] or default


def model_device(model: nn.Module) -> torch.device:
    return _dtype_device(model)[1]


def double_copy(model: nn.Module) -> nn.Module:
    """A float64 eval-mode copy of ``model`` without parameter gradients (memoised)."""
    state = _state(model)
    if state.double is None:
        twin = copy.deepcopy(model).to(device="cpu", dtype=torch.float64).eval()
        for p in twin.parameters():
            p.requires_grad_(False)
        state.double = twin
    return state.double


def run(model: nn.Module, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``model(a, b)`` for (N, 1, H, W) inputs, checked to return (N, 1, H, W)."""
    out = model(a, b)
    if not isinstance(out, torch.Tensor) or out.shape != a.shape:
        shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise ValueError(f"{type(model).__name__}.forward(a, b) returned {shape} for inputs of shape "
                         f"{tuple(a.shape)}; a fusion model must return (N, 1, H, W) like its inputs")
    return out


# ------------------------------------------------------------------ analysis
def analytic_guess(model: nn.Module) -> tuple[int, int]:
    """(receptive field guess, stride) from the layers: sum of (k - 1) * dilation; product of strides."""
    span, stride = 0, 1
    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            k, d = m.kernel_size, m.dilation
            span += max((k[0] - 1) * d[0], (k[1] - 1) * d[1])
            if isinstance(m, nn.Conv2d):
                stride *= max(m.stride)
        elif isinstance(m, (nn.MaxPool2d, nn.AvgPool2d)):
            k = m.kernel_size if isinstance(m.kernel_size, int) else max(m.kernel_size)
            s = m.stride if isinstance(m.stride, int) else max(m.stride or (k,))
            span += k - 1
            stride *= max(int(s or k), 1)
    return span * stride + 1, max(stride, 1)


def _probe_support(twin: nn.Module, size: int, stride: int, gen: torch.Generator) -> tuple[int, int, int, int, bool]:
    """(up, down, left, right, touches_border) of the gradient support of centre pixels of a size x size probe.

    The union is over ``PROBE_REPEATS`` random inputs and all ``stride`` x ``stride`` phases.
    """
    centre = size // 2
    up = down = left = right = 0
    touches = False
    for _ in range(PROBE_REPEATS):
        a = torch.rand(1, 1, size, size, dtype=torch.float64, generator=gen).requires_grad_(True)
        b = torch.rand(1, 1, size, size, dtype=torch.float64, generator=gen).requires_grad_(True)
        out = run(twin, a, b)
        for dy in range(stride):
            for dx in range(stride):
                r, c = centre + dy, centre + dx
                ga, gb = torch.autograd.grad(out[0, 0, r, c], (a, b), retain_graph=True, allow_unused=True)
                mask = torch.zeros(size, size, dtype=torch.bool)
                for g in (ga, gb):
                    if g is not None:
                        mask |= g[0, 0] != 0
                mask[r, c] = True
                rows = torch.nonzero(mask.any(dim=1)).flatten()
                cols = torch.nonzero(mask.any(dim=0)).flatten()
                r0, r1, c0, c1 = int(rows[0]), int(rows[-1]), int(cols[0]), int(cols[-1])
                touches |= r0 == 0 or c0 == 0 or r1 == size - 1 or c1 == size - 1
                up, down = max(up, r - r0), max(down, r1 - r)
                left, right = max(left, c - c0), max(right, c1 - c)
    return up, down, left, right, touches


def analyse(model: nn.Module) -> Field:
    """The model's receptive field, stride and locality, derived by probing (memoised per instance)."""
    state = _state(model)
    if state.field is not None:
        return state.field
    guess, stride = analytic_guess(model)
    twin = double_copy(model)
    gen = torch.Generator().manual_seed(1234)
    size = max(guess + 4, 9)
    sizes = []
    with torch.enable_grad():
        while True:
            size = stride * math.ceil(size / stride) + 2 * stride  # whole cells, room for every phase
            sizes.append(size)
            up, down, left, right, touches = _probe_support(twin, size, stride, gen)
            if not touches:
                field = Field(up, down, left, right, stride)
                break
            if size * PROBE_GROWTH > MAX_PROBE and len(sizes) >= 2:
                field = Field(up, down, left, right, stride, local=False, reason=(
                    "the receptive field reaches the border of every probe "
                    f"({', '.join(f'{s} x {s}' for s in sizes)}): the model has a global operation "
                    "(global pooling, attention or normalisation over the image)"))
                break
            size *= PROBE_GROWTH
    state.field = field
    return field


def remember_field(model: nn.Module, field: Field) -> Field:
    """Install a field derived elsewhere (another process, a cache) for this model instance."""
    _state(model).field = field
    return field


def remember_verdict(model: nn.Module, height: int, width: int, verdict: tuple[bool, str | None],
                     shrinking: bool | None = None, replay: bool | None = None,
                     replay_faster: dict[int, bool] | None = None) -> None:
    """Install verification verdicts (and the timings of ``replay_pays``, by hovers at once) derived
    elsewhere for this model instance and image shape."""
    state = _state(model)
    state.verdicts[(height, width)] = (bool(verdict[0]), verdict[1])
    if shrinking is not None:
        state.shrinking[(height, width)] = bool(shrinking)
    if replay is not None:
        state.replay[(height, width)] = bool(replay)
    for concurrent, faster in (replay_faster or {}).items():
        state.replay_pays[(height, width, int(concurrent))] = bool(faster)


def receptive_field(model: nn.Module) -> int:
    """Side of the (probed) receptive field in pixels; 0 when the model is not local."""
    field = analyse(model)
    return field.size if field.local else 0


# ------------------------------------------------------------------ verification
def representative_shape(field: Field, height: int, width: int) -> tuple[int, int]:
    """The smallest image shape, at most ``height`` x ``width``, whose crops have every window geometry of
    ``height`` x ``width`` (interior, each edge, each corner; the same phase against the stride).

    For a local model with this field, a crop's result depends only on its window geometry and
    contents, so the crop paths are verified on this shape instead of the whole image.

    >>> representative_shape(Field(11, 11, 11, 11), 512, 320)
    (48, 48)
    >>> representative_shape(Field(2, 2, 2, 2, stride=4), 31, 16)  # 31 = 19 (mod 4)
    (19, 16)
    """
    def side(n: int, before: int, after: int) -> int:
        span = 2 * (before + after + 1) + 2 * field.stride
        return n if n <= span else span + (n - span) % field.stride

    return side(height, field.up, field.down), side(width, field.left, field.right)


def _representative(model: nn.Module, height: int, width: int) -> tuple[int, int] | None:
    """``representative_shape`` of a local model where it is smaller than the image, else None."""
    field = analyse(model)
    if not field.local:
        return None
    shape = representative_shape(field, height, width)
    return None if shape == (height, width) else shape


def corner_pixels(height: int, width: int, extra: int = 2, seed: int = 0) -> list[tuple[int, int]]:
    """The four corners, the centre and ``extra`` random pixels of an image."""
    rng = np.random.default_rng(seed)
    pixels = [(0, 0), (0, width - 1), (height - 1, 0), (height - 1, width - 1), (height // 2, width // 2)]
    pixels += [(int(rng.integers(height)), int(rng.integers(width))) for _ in range(extra)]
    return list(dict.fromkeys(pixels))


def full_rows(model: nn.Module, a: torch.Tensor, b: torch.Tensor, pixels,
              weights: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Exact Jacobian rows by full-image autograd; a, b (H, W) -> rows_a, rows_b (K, H, W), values (K,).

    With ``weights`` (K,), one backward pass returns the single row sum_k w_k dF(p_k)/d(a, b),
    as two (1, H, W) tensors.
    """
    a = a[None, None].clone().requires_grad_(True)
    b = b[None, None].clone().requires_grad_(True)
    with torch.enable_grad():
        out = run(model, a, b)
        picked = torch.stack([out[0, 0, r, c] for r, c in pixels])
        seeds = [picked @ weights.to(picked.dtype)] if weights is not None else list(picked)
        rows_a, rows_b = [], []
        for k, seed in enumerate(seeds):
            ga, gb = torch.autograd.grad(seed, (a, b), retain_graph=k + 1 < len(seeds), allow_unused=True)
            rows_a.append(torch.zeros_like(a[0, 0]) if ga is None else ga[0, 0])
            rows_b.append(torch.zeros_like(b[0, 0]) if gb is None else gb[0, 0])
    return torch.stack(rows_a), torch.stack(rows_b), picked.detach()


def _test_case(model: nn.Module, height: int, width: int):
    """A random pair (H, W), the corner/centre pixels and random weights, in the model's dtype and device."""
    dtype, device = model_dtype(model), model_device(model)
    gen = torch.Generator().manual_seed(4321)
    a, b = (torch.rand(height, width, dtype=torch.float64, generator=gen).to(device, dtype) for _ in "ab")
    pixels = corner_pixels(height, width)
    weights = torch.rand(len(pixels), dtype=torch.float64, generator=gen).to(device, dtype) + 0.5
    return a, b, pixels, weights


def _disagreement(model: nn.Module, height: int, width: int, rows) -> float | None:
    """Relative error of ``rows(a, b, pixels) -> (rows_a, rows_b, values)`` against full-image autograd.

    Compares sum_k w_k dF(p_k)/d(a, b) (random weights w_k; pixels p_k: the four
    corners, the centre and two random pixels) from one full-image backward pass
    with the same sum from ``rows``. Returns None when within tolerance.
    """
    a, b, pixels, weights = _test_case(model, height, width)
    want_a, want_b, _ = full_rows(model, a, b, pixels, weights)
    got_a, got_b, _ = rows(a, b, pixels)
    rtol = VERIFY_RTOL if a.dtype == torch.float64 else VERIFY_RTOL_FLOAT32
    worst = 0.0
    for want, got in ((want_a[0], (got_a * weights[:, None, None]).sum(0)),
                      (want_b[0], (got_b * weights[:, None, None]).sum(0))):
        scale = max(float(want.abs().max()), float(got.abs().max()), 1e-30)
        worst = max(worst, float((want - got).abs().max()) / scale)
    return worst if worst > rtol else None


def verify(model: nn.Module, height: int, width: int) -> tuple[bool, str | None]:
    """Does the crop path equal full-image autograd for this model at this image shape? (memoised)

    Returns (ok, reason when not ok).
    """
    from .pixel import crop_rows  # the crop path under test

    state = _state(model)
    key = (height, width)
    if key in state.verdicts:
        return state.verdicts[key]
    field = analyse(model)
    smaller = _representative(model, height, width)
    if not field.local:
        verdict = (False, field.reason)
    elif smaller is not None:
        verdict = verify(model, *smaller)
    else:
        err = _disagreement(model, height, width,
                            lambda a, b, pixels: crop_rows(model, a, b, pixels, field, shrinking=False))
        verdict = (True, None) if err is None else (False, (
            f"the receptive-field crop disagrees with full-image autograd (relative error {err:.2g} at the "
            f"corners and centre of a {height} x {width} image): the model is not local or not aligned as probed"))
    state.verdicts[key] = verdict
    return verdict


def verify_shrinking(model: nn.Module, height: int, width: int) -> bool:
    """May crops run with shrinking windows (``shrinking.py``) for this model and shape? (memoised)

    Only where the plain crop path is verified, the stride is 1, the model runs
    under the shrinking windows without an unsupported operation, and the result
    equals full-image autograd at the corners and centre.
    """
    from .pixel import crop_rows

    state = _state(model)
    key = (height, width)
    smaller = _representative(model, height, width)
    if key not in state.shrinking and smaller is not None:
        state.shrinking[key] = verify_shrinking(model, *smaller)
    if key not in state.shrinking:
        field = analyse(model)
        state.shrinking[key] = field.local and field.stride == 1 and verify(model, height, width)[0] and _agrees(
            model, height, width, lambda a, b, pixels: crop_rows(model, a, b, pixels, field, shrinking=True))
    return state.shrinking[key]


def _agrees(model: nn.Module, height: int, width: int, rows) -> bool:
    """Does a shrinking-window path ``rows`` (see ``_disagreement``) follow the model and equal full-image autograd?"""
    from .shrinking import Unsupported

    try:
        return _disagreement(model, height, width, rows) is None
    except Unsupported:
        return False


def verify_replay(model: nn.Module, height: int, width: int) -> bool:
    """May hovers replay kept full-image activations (``record_forward``) for this model and shape? (memoised)

    Only where the shrinking windows are verified, the model's full-image forward
    pass can be recorded, and replaying it equals full-image autograd at the
    corners and centre.
    """
    from .pixel import crop_rows
    from .shrinking import record_forward

    state = _state(model)
    key = (height, width)
    smaller = _representative(model, height, width)
    if key not in state.replay and smaller is not None:
        state.replay[key] = verify_replay(model, *smaller)
    if key not in state.replay:
        field = analyse(model)

        def replayed(a, b, pixels):
            return crop_rows(model, a, b, pixels, field, shrinking=True, record=record_forward(model, a, b))

        state.replay[key] = verify_shrinking(model, height, width) and _agrees(model, height, width, replayed)
    return state.replay[key]


def replay_pays(model: nn.Module, height: int, width: int, concurrent: int = 2, repeats: int = 3) -> bool:
    """Is a hover faster replaying kept activations than computing its shrinking windows? (timed once, memoised)

    Both are exact (``verify_replay``); which is faster depends on the model and the
    machine: replaying skips the forward convolutions but adds a Python step (which
    holds the GIL) to each one's backward. Timed as the service hovers: single-pixel
    hovers near the centre of the verification pair, ``concurrent`` threads at once (2:
    the models of one hover share a process; 1: a worker process hovers one model at a
    time), the two ways alternately, best of ``repeats``.
    """
    import time
    from concurrent.futures import ThreadPoolExecutor

    from .pixel import crop_rows, single_thread
    from .shrinking import record_forward

    state = _state(model)
    key = (height, width, concurrent)
    smaller = _representative(model, height, width)  # a hover's cost depends on its window, not on the image
    if key not in state.replay_pays and smaller is not None:
        state.replay_pays[key] = replay_pays(model, *smaller, concurrent, repeats)
    if key not in state.replay_pays:
        pays = verify_replay(model, height, width)
        if pays:
            a, b, _, _ = _test_case(model, height, width)
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


def plan(model: nn.Module, height: int, width: int) -> tuple[str, Field, str | None]:
    """("crop" or "full-image", field, reason) for this model at this image shape."""
    field = analyse(model)
    ok, reason = verify(model, height, width)
    return ("crop" if ok else "full-image"), field, reason
