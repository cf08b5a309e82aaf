"""The crop path with shrinking windows: compute only the activations that reach the pixel.

A plain receptive-field crop runs every layer on the whole window, although the
last layers only need the few positions around the chosen pixel. Here every
stride-1 "same" convolution runs as a *valid* convolution, so each activation
covers only the positions that are exactly computable from the window; the
window shrinks layer by layer down to the pixel (about a third of the work for
a stack of equal convolutions). Where a window side lies on the image border,
the convolution pads that side with zeros, exactly like the full-image model.

Tracking is generic: a ``TorchFunctionMode`` follows every activation's extent
(the rows and columns it covers, relative to the window), crops operands of
elementwise operations and channel concatenations to the extent they share, and
refuses (``Unsupported``) anything it does not understand: strides, pooling,
resampling, spatial indexing, reductions, padding modes. A model is only run
this way after ``verify_shrinking`` has compared it with full-image autograd at
the four corners and the centre; otherwise the plain crop path is used.

A run that reads no value of an activation is recorded as a ``WindowProgram``
(the plain PyTorch calls, replayed without the mode; ``programs.run_windows``
keeps them per model). Replaying kept full-image activations instead of
computing the convolutions is in ``replay.py``.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.overrides import TorchFunctionMode

#: Operations that act on each spatial position independently (names of torch functions and methods).
POINTWISE = frozenset({
    "abs", "add", "sub", "rsub", "mul", "div", "true_divide", "neg", "pow", "sqrt", "rsqrt", "exp", "log",
    "maximum", "minimum", "clamp", "clamp_min", "clamp_max", "where", "gt", "ge", "lt", "le", "eq", "ne",
    "relu", "leaky_relu", "elu", "selu", "gelu", "silu", "hardtanh", "prelu", "softplus", "sigmoid", "tanh",
    "batch_norm", "ones_like", "zeros_like", "clone", "contiguous", "to", "float", "double",
    "__add__", "__radd__", "__sub__", "__rsub__", "__mul__", "__rmul__", "__truediv__", "__rtruediv__",
    "__neg__", "__pow__", "__rpow__", "__gt__", "__ge__", "__lt__", "__le__",
})


def _base_name(name: str) -> str:
    """The out-of-place name of an in-place operation: relu_ -> relu, __iadd__ -> __add__."""
    if name.startswith("__i") and name.endswith("__"):
        return "__" + name[3:]
    if name.endswith("_") and not name.endswith("__"):
        return name[:-1]
    return name


class Unsupported(Exception):
    """The model does something the shrinking windows cannot follow exactly."""


@dataclass(frozen=True)
class Extent:
    """Rows [top, bottom) and columns [left, right) of the window that an activation covers."""

    top: int
    bottom: int
    left: int
    right: int

    @property
    def size(self) -> tuple[int, int]:
        return self.bottom - self.top, self.right - self.left

    def __and__(self, other: Extent) -> Extent:
        return Extent(max(self.top, other.top), min(self.bottom, other.bottom),
                      max(self.left, other.left), min(self.right, other.right))


_EXTENT = "_fusion_extent"


def _extent(x) -> Extent | None:
    return getattr(x, _EXTENT, None) if isinstance(x, torch.Tensor) else None


def tag_extent(x: torch.Tensor, extent: Extent) -> torch.Tensor:
    """Mark ``x`` as an activation covering ``extent`` of the window (in place; returns x)."""
    setattr(x, _EXTENT, extent)
    return x


def _map(obj, fn):
    """Apply fn to every tensor in nested lists, tuples and dicts."""
    if isinstance(obj, torch.Tensor):
        return fn(obj)
    if isinstance(obj, (list, tuple)):
        return type(obj)(_map(o, fn) for o in obj)
    if isinstance(obj, dict):
        return {k: _map(v, fn) for k, v in obj.items()}
    return obj


def _tensors(obj) -> list[torch.Tensor]:
    """Every tensor in nested lists, tuples and dicts (runs on every operation: no recursion)."""
    found: list[torch.Tensor] = []
    pending = [obj]
    while pending:
        item = pending.pop()
        if isinstance(item, torch.Tensor):
            found.append(item)
        elif isinstance(item, (list, tuple)):
            pending.extend(reversed(item))
        elif isinstance(item, dict):
            pending.extend(reversed(item.values()))
    return found


#: Valid convolutions of fewer multiply-adds than this run on PyTorch's plain im2col kernel
#: (``thnn_conv2d``), whose fixed cost per call is a fraction of oneDNN's: measured on the 2-core
#: CPU, forward plus input gradient, it was 2 to 4 times faster for the one-channel first and last
#: layers and the small windows near the pixel, about equal from 4 M to 8 M, and 10 to 35 % slower
#: above 10 M.
PLAIN_KERNEL_MACS = 8_000_000


def plain_kernel(x: torch.Tensor, weight: torch.Tensor, out: Extent, dilation, groups) -> bool:
    """Run this valid convolution of x (N, C, h, w) on the plain im2col kernel? (CPU, no dilation, no groups)"""
    height, width = out.size
    return (x.device.type == "cpu" and groups == 1 and dilation in (1, (1, 1), [1, 1])
            and x.shape[0] * height * width * weight.numel() < PLAIN_KERNEL_MACS)


class ShrinkingWindows(TorchFunctionMode):
    """Runs a model on a window with valid convolutions (see the module docstring).

    ``border`` says which window sides lie on the image border: (top, bottom, left, right).
    ``recording``: keep every call made on activations, for ``program()`` (see ``WindowProgram``).
    """

    def __init__(self, border: tuple[bool, bool, bool, bool], recording: bool = False):
        super().__init__()
        self.border = border
        self._window = (0, 0)  # (h, w) of the window being run; set by run()
        self._recording = recording
        self._steps: list[tuple] = []
        self._values: list = []  # what the slots hold, kept alive while recording: their ids stay unique
        self._slots: dict[int, int] = {}  # id(value) -> slot

    def call_op(self, func, *args, **kwargs):
        """``func(*args, **kwargs)``: every computation on activations runs through here (and is recorded)."""
        result = func(*args, **kwargs)
        if self._recording:
            if not isinstance(result, torch.Tensor):
                raise NotRecordable(f"{getattr(func, '__name__', func)!r} returned {type(result).__name__}")
            self._steps.append((func, _bind(args, self._slots), _bind(kwargs, self._slots)))
            self._hold(result)
        return result

    def _hold(self, value) -> None:
        """Give ``value`` the next slot (recording)."""
        self._slots[id(value)] = len(self._values)
        self._values.append(value)

    def _query(self, name: str, result):
        """An operation on activations that returned no tensor (dim, size, ...)."""
        if self._recording and name not in SHAPE_QUERIES:
            raise NotRecordable(f"the model reads a value of an activation ({name!r})")
        return result

    def _begin(self, a: torch.Tensor, b: torch.Tensor) -> None:
        """Called with the two input activations before the model runs: slots 0, 1 and 2 (``source``)."""
        if self._recording:
            self._hold(a)
            self._hold(b)
            self._values.append(self.source)
            if self.source is not None:
                self._slots[id(self.source)] = 2

    #: What a program's slot 2 holds: run-time data other than the windows (``ReplayWindows``: the record).
    source = None

    def program(self, out: torch.Tensor, extent: Extent) -> WindowProgram:
        """The program of the recorded run that returned ``out``."""
        if not self._recording or id(out) not in self._slots:
            raise NotRecordable("the output was not computed by a recorded call")
        return WindowProgram(self._steps, self._slots[id(out)], extent)

    def _cut(self, x: torch.Tensor, extent: Extent) -> torch.Tensor:
        """x (..., h, w) covering its own extent, cut down to ``extent`` (contained in it)."""
        own = _extent(x)
        if own == extent:
            return x
        return self.call_op(torch.Tensor.__getitem__, x, (Ellipsis,
                                                          slice(extent.top - own.top, extent.bottom - own.top),
                                                          slice(extent.left - own.left, extent.right - own.left)))

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        tensors = _tensors((args, kwargs))
        tracked = [t for t in tensors if _extent(t) is not None]
        if not tracked:
            return func(*args, **kwargs)
        name = getattr(func, "__name__", repr(func))
        if name == "conv2d":
            return self.conv(*args, **kwargs)
        if name == "cat":
            dim = kwargs.get("dim", args[1] if len(args) > 1 else 0)
            if dim not in (1, -3):
                raise Unsupported(f"concatenation along dimension {dim}")
        elif name == "batch_norm" and (kwargs.get("training", args[5] if len(args) > 5 else False)):
            raise Unsupported("BatchNorm in training mode normalises over the image")
        elif _base_name(name) not in POINTWISE:
            result = func(*args, **kwargs)
            if _tensors(result):  # metadata queries (dim, size, ...) return no tensors and pass
                raise Unsupported(f"operation {name!r}")
            return self._query(name, result)
        common = _extent(tracked[0])
        for t in tracked[1:]:
            common = common & _extent(t)
        height, width = common.size
        if height <= 0 or width <= 0:
            raise Unsupported("the window shrank to nothing")
        for t in tensors:
            if _extent(t) is None and t.dim() >= 2 and tuple(t.shape[-2:]) != (1, 1):
                raise Unsupported(f"{name!r} mixes an activation with an untracked {tuple(t.shape)} tensor")
        if any(_extent(t) != common for t in tracked):
            if _base_name(name) != name:
                raise Unsupported(f"in-place {name!r} on activations of different extents")
            args, kwargs = _map((args, kwargs), lambda t: self._cut(t, common) if _extent(t) is not None else t)
        result = self.call_op(func, *args, **kwargs)
        for out in _tensors(result):
            if tuple(out.shape[-2:]) != (height, width):
                raise Unsupported(f"{name!r} changed the spatial size")
            tag_extent(out, common)
        return result

    def conv(self, x, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
        """``F.conv2d`` on an activation, run as a valid convolution (subclasses change how it is computed)."""
        x, out_extent = self.valid_conv_input(x, weight, bias, stride, padding, dilation)
        if plain_kernel(x, weight, out_extent, dilation, groups):
            return tag_extent(self.call_op(torch._C._nn.thnn_conv2d, x, weight, weight.shape[-2:], bias), out_extent)
        return tag_extent(self.call_op(F.conv2d, x, weight, bias, 1, 0, dilation, groups), out_extent)

    def valid_conv_input(self, x, weight, bias, stride, padding, dilation) -> tuple[torch.Tensor, Extent]:
        """(x zero-padded on its image-border sides only, the extent a valid convolution of it covers)."""
        extent = _extent(x)
        if _extent(weight) is not None or _extent(bias) is not None:
            raise Unsupported("a convolution whose weights depend on the image")
        pair = lambda v: tuple(v) if isinstance(v, (tuple, list)) else (v, v)  # noqa: E731
        if pair(stride) != (1, 1):
            raise Unsupported("strided convolution")
        kernel = [d * (k - 1) + 1 for d, k in zip(pair(dilation), weight.shape[-2:], strict=True)]
        if padding == "same":
            padding = tuple(k // 2 for k in kernel)
        elif padding == "valid":
            padding = (0, 0)
        reach = pair(padding)
        if any(k != 2 * p + 1 for k, p in zip(kernel, reach, strict=True)):
            raise Unsupported("a convolution that does not keep the image size")
        top, bottom, left, right = self.border
        h_window, w_window = self._window
        pad_top = reach[0] if top and extent.top == 0 else 0
        pad_bottom = reach[0] if bottom and extent.bottom == h_window else 0
        pad_left = reach[1] if left and extent.left == 0 else 0
        pad_right = reach[1] if right and extent.right == w_window else 0
        out_extent = Extent(extent.top + reach[0] - pad_top, extent.bottom - reach[0] + pad_bottom,
                            extent.left + reach[1] - pad_left, extent.right - reach[1] + pad_right)
        if out_extent.size[0] <= 0 or out_extent.size[1] <= 0:
            raise Unsupported("the window shrank to nothing")
        if pad_top or pad_bottom or pad_left or pad_right:
            x = self.call_op(F.pad, x, (pad_left, pad_right, pad_top, pad_bottom))
        return x, out_extent

    def run(self, model: nn.Module, a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, Extent]:
        """model(a, b) on (N, 1, h, w) windows -> (output, the extent it covers)."""
        self._window = tuple(a.shape[-2:])
        whole = Extent(0, a.shape[-2], 0, a.shape[-1])
        a, b = tag_extent(a.view_as(a), whole), tag_extent(b.view_as(b), whole)
        self._begin(a, b)
        with self:
            out = model(a, b)
        extent = _extent(out)
        if extent is None or not isinstance(out, torch.Tensor) or out.dim() != 4 or out.shape[:2] != a.shape[:2]:
            raise Unsupported("the output is not an activation of the inputs")
        return out, extent


# ------------------------------------------------------------------ recorded window programs
#: Operations on activations that may return a Python value to the model: shape facts, the same for
#: every window of one shape. Any other value read from an activation could steer the model's
#: control flow by the pixels, so a run that reads one is not recorded.
SHAPE_QUERIES = frozenset({"__get__", "dim", "size", "ndimension", "numel", "nelement", "__len__",
                           "is_floating_point", "is_complex", "is_contiguous", "stride", "get_device"})


class NotRecordable(Unsupported):
    """The model read a value of an activation: its run cannot be replayed as a fixed program."""


@dataclass(frozen=True)
class _Slot:
    """In a recorded step: the value computed by an earlier step (or input 0, 1 or the source, 2)."""

    index: int


def _bind(obj, slots: dict[int, int]):
    """obj with every value held in a slot during the recording replaced by its ``_Slot``."""
    if id(obj) in slots:
        return _Slot(slots[id(obj)])
    if isinstance(obj, (list, tuple)):
        return type(obj)(_bind(o, slots) for o in obj)
    if isinstance(obj, dict):
        return {k: _bind(v, slots) for k, v in obj.items()}
    return obj


def _resolve(obj, values: list):
    """Inverse of ``_bind``, given the values computed so far."""
    if type(obj) is _Slot:
        return values[obj.index]
    if isinstance(obj, (list, tuple)):
        return type(obj)(_resolve(o, values) for o in obj)
    if isinstance(obj, dict):
        return {k: _resolve(v, values) for k, v in obj.items()}
    return obj


def _has_slot(obj) -> bool:
    if type(obj) is _Slot:
        return True
    if isinstance(obj, (list, tuple)):
        return any(_has_slot(o) for o in obj)
    if isinstance(obj, dict):
        return any(_has_slot(v) for v in obj.values())
    return False


class WindowProgram:
    """The PyTorch calls of one shrinking-window run, replayed without the mode.

    Tracking the windows costs Python work on every operation; for one window
    shape and border the calls are the same for every pixel and pair (the model
    is recorded only if it reads no value of an activation), so they are
    recorded once (``ShrinkingWindows(border, recording=True)``) and replayed: the
    same kernels on the same operands, giving bit-identical results. Weights are
    held by reference: a program belongs to one state of the model (see
    ``state.model_state``). A replay's program reads the kept activations
    from its ``source`` (``ReplaySource``: the record and the windows' origins).
    """

    def __init__(self, steps: list[tuple], output: int, extent: Extent):
        # Per step: (func, args, kwargs, top-level (position, slot) pairs of args, whether anything else
        # refers to slots). Most steps take slots only as plain arguments: those are filled in directly.
        self.steps = []
        for func, args, kwargs in steps:
            direct = [(k, arg.index) for k, arg in enumerate(args) if type(arg) is _Slot]
            nested = _has_slot(kwargs) or any(_has_slot(arg) for arg in args if type(arg) is not _Slot)
            self.steps.append((func, list(args), kwargs, direct, nested))
        self.output, self.extent = output, extent

    def run(self, a: torch.Tensor, b: torch.Tensor, source=None) -> tuple[torch.Tensor, Extent]:
        """The recorded run on windows a, b (N, 1, h, w) of the recorded shape -> (output, extent)."""
        values = [a, b, source]
        for func, args, kwargs, direct, nested in self.steps:
            if nested:
                args, kwargs = _resolve(args, values), _resolve(kwargs, values)
            elif direct:
                args = args.copy()
                for position, index in direct:
                    args[position] = values[index]
            values.append(func(*args, **kwargs))
        return values[self.output], self.extent
