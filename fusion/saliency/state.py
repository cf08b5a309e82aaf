"""What the engine remembers about one model instance, and the model's dtype and device.

``model_state(model)`` is the memo of one model instance (``ModelState``): its probed field,
the verdicts of the checks per image shape, the timings of the replay, a float64 copy and the
recorded window programs. It is keyed by the instance and dropped when the weights' ``fingerprint``
changes (a parameter or buffer replaced or modified in place, train/eval switched, the model's own
settings changed), so every memoised fact belongs to one state of the weights. ``pinned(model)``
looks the state up once for a block of work instead of at every step.

This is the lowest layer of the engine: it imports no other module of ``fusion.saliency``.
"""
from __future__ import annotations

import contextlib
import copy
import functools
import itertools
import threading
import weakref
from collections import OrderedDict
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import nn

if TYPE_CHECKING:  # annotations only: the field module is a layer above this one
    from .field import Field


class ModelState:
    """Per-model-instance memo (``model_state``); every fact holds for the weights of ``fingerprint``.

    ``field``: the probed ``Field`` (``field.analyse``). By image shape (H, W): ``verdicts``
    ((ok, reason) of ``verify``), ``shrinking`` and ``replay`` (``verify_shrinking``,
    ``verify_replay``); by (H, W, hovers at once): ``replay_pays``. ``double``: the float64 copy
    (``double_copy``). ``programs``: the recorded shrinking-window programs by window geometry
    (``programs.run_windows``; None: not recordable), guarded by ``lock``.
    """

    def __init__(self, fingerprint):
        self.fingerprint = fingerprint
        self.field: Field | None = None
        self.verdicts: dict[tuple[int, int], tuple[bool, str | None]] = {}
        self.shrinking: dict[tuple[int, int], bool] = {}
        self.replay: dict[tuple[int, int], bool] = {}
        self.replay_pays: dict[tuple[int, int, int], bool] = {}  # (H, W, hovers at once) -> faster
        self.double: nn.Module | None = None
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


_PINNED = threading.local()  # .states: {id(model): ModelState} of the models pinned by this thread


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
    states[id(model)] = state = model_state(model)
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


def model_state(model: nn.Module) -> ModelState:
    """The engine's memo for this model instance, new if its weights changed since (see the module docstring)."""
    states = getattr(_PINNED, "states", None)
    if states and id(model) in states:
        return states[id(model)]
    fp = fingerprint(model)
    state = _STATES.get(model)
    if state is None or state.fingerprint != fp:
        state = ModelState(fp)
        _STATES[model] = state
    return state


def _dtype_device(model: nn.Module) -> tuple[torch.dtype | None, torch.device]:
    """(the floating dtype of the first floating parameter or buffer, or None; the first one's device)."""
    state = model_state(model)
    if state.dtype_device is None:
        tensors = list(itertools.chain(model.parameters(), model.buffers()))
        dtype = next((t.dtype for t in tensors if t.is_floating_point()), None)
        state.dtype_device = dtype, tensors[0].device if tensors else torch.device("cpu")
    return state.dtype_device


def model_dtype(model: nn.Module, default: torch.dtype | None = torch.float32) -> torch.dtype | None:
    """The floating dtype of the model's parameters (``default`` for parameter-free models)."""
    return _dtype_device(model)[0] or default


def model_device(model: nn.Module) -> torch.device:
    """The device of the model's first parameter or buffer (the CPU for models without any)."""
    return _dtype_device(model)[1]


def double_copy(model: nn.Module) -> nn.Module:
    """A float64 eval-mode copy of ``model`` on the CPU without parameter gradients (memoised)."""
    state = model_state(model)
    if state.double is None:
        twin = copy.deepcopy(model).to(device="cpu", dtype=torch.float64).eval()
        for p in twin.parameters():
            p.requires_grad_(False)
        state.double = twin
    return state.double


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
