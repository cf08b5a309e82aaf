"""Replay: shrinking windows run against the kept activations of one full-image forward pass.

``record_forward(model, a, b)`` runs the model once on the whole image and keeps the output of
every convolution (``ForwardRecord``). ``ReplayWindows`` then runs a hover's shrinking windows
with each convolution's output read from the record instead of computed, so that a hover computes
only the input gradients of its convolutions. It is used where ``verify_replay`` passed and
``replay_pays`` timed it faster.
"""
from __future__ import annotations

import torch
from torch import nn

from .state import as_tensor, model_state
from .windows import Extent, ShrinkingWindows, Unsupported, plain_kernel, tag_extent


class ForwardRecord:
    """The outputs of every convolution of one full-image forward pass of ``model`` on (a, b), in call order.

    ``outputs[k]``: (1, C_k, H, W), detached; ``fused``: the model's output (H, W).
    A hover replays its shrinking windows against them (``ReplayWindows``): each
    convolution reads its window from here instead of computing it, so a hover
    pays only the backward half.
    """

    def __init__(self, model: nn.Module, a: torch.Tensor, b: torch.Tensor, outputs: list[torch.Tensor],
                 fused: torch.Tensor):
        self.outputs, self.fused = outputs, fused
        self.inputs = (a.detach().clone(), b.detach().clone())  # pass these to hovers: no comparison needed
        self._model_fingerprint = model_state(model).fingerprint

    @property
    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in (*self.outputs, self.fused, *self.inputs))

    def check(self, model: nn.Module, a: torch.Tensor, b: torch.Tensor) -> None:
        """Raise ValueError unless this record was made by ``model`` (unchanged since) on exactly (a, b)."""
        if model_state(model).fingerprint != self._model_fingerprint:
            raise ValueError("the forward record was made by another model or other weights")
        if not all(x is y or (x.shape == y.shape and x.dtype == y.dtype and torch.equal(x, y))
                   for x, y in zip((a, b), self.inputs, strict=True)):
            raise ValueError("the forward record was made on another image pair")


class _Recorder(ShrinkingWindows):
    """Runs the model on the whole image (every side on the border) and keeps each convolution's output."""

    def __init__(self):
        super().__init__((True, True, True, True))
        self.outputs: list[torch.Tensor] = []

    def conv(self, *args, **kwargs):
        out = super().conv(*args, **kwargs)
        self.outputs.append(out.detach())
        return out


def record_forward(model: nn.Module, a, b) -> ForwardRecord:
    """One full-image forward pass on a, b (H x W arrays or tensors), keeping every convolution's output.

    Raises Unsupported where the shrinking windows cannot follow the model.
    """
    a, b = as_tensor(a, "a", model), as_tensor(b, "b", model)
    recorder = _Recorder()
    with torch.no_grad():
        out, extent = recorder.run(model, a[None, None], b[None, None])
    if extent != Extent(0, a.shape[0], 0, a.shape[1]):
        raise Unsupported("the full-image output does not cover the image")
    return ForwardRecord(model, a, b, recorder.outputs, out[0, 0])


class _ReplayedConv(torch.autograd.Function):
    """A valid convolution whose output is read from a ForwardRecord; backward: the input gradient only."""

    @staticmethod
    def forward(ctx, x, weight, kept, plain, dilation, groups):
        ctx.save_for_backward(x, weight)
        ctx.plain, ctx.dilation, ctx.groups = plain, dilation, groups
        return kept

    @staticmethod
    def backward(ctx, grad):
        x, weight = ctx.saved_tensors
        grad_x = None
        if ctx.needs_input_grad[0] and ctx.plain:
            grad_x = torch.ops.aten._slow_conv2d_backward.output_mask(
                grad, x, weight, weight.shape[-2:], (1, 1), (0, 0), (True, False, False))[0]
        elif ctx.needs_input_grad[0]:
            grad_x = torch.nn.grad.conv2d_input(x.shape, weight, grad, dilation=ctx.dilation, groups=ctx.groups)
        return grad_x, None, None, None, None, None


class ReplaySource:
    """Where a replay reads its convolutions' outputs: the record, and each window's image position (top, left)."""

    __slots__ = ("record", "origins")

    def __init__(self, record: ForwardRecord, origins):
        self.record, self.origins = record, [(int(top), int(left)) for top, left in origins]


def _kept_windows(source: ReplaySource, k: int, extent: Extent) -> torch.Tensor:
    """The windows ``extent`` (relative to each origin) of the k-th kept convolution output, (N, C, h, w)."""
    full = source.record.outputs[k]
    # A copy, not a view: later operations run faster on it (measured), and in-place ones cannot reach the record.
    return torch.cat([full[:, :, top + extent.top:top + extent.bottom, left + extent.left:left + extent.right]
                      for top, left in source.origins])


class ReplayWindows(ShrinkingWindows):
    """Shrinking windows whose convolutions read their outputs from a full-image ForwardRecord.

    ``origins``: the image position (top, left) of each window in the batch. Only
    the cheap pointwise operations run forward (they build the graph the backward
    pass needs); the convolutions cost only their input gradients.
    """

    def __init__(self, border, record: ForwardRecord, origins, recording: bool = False):
        super().__init__(border, recording)
        self.source, self._calls = ReplaySource(record, origins), 0

    @property
    def record(self) -> ForwardRecord:
        return self.source.record

    def conv(self, x, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
        x, extent = self.valid_conv_input(x, weight, bias, stride, padding, dilation)
        if self._calls >= len(self.record.outputs):
            raise Unsupported("the model ran more convolutions than its recorded forward pass")
        full = self.record.outputs[self._calls]
        if full.shape[1] != weight.shape[0] or full.dtype != x.dtype:
            raise Unsupported("the convolutions ran in another order than in the recorded forward pass")
        kept = self.call_op(_kept_windows, self.source, self._calls, extent)
        self._calls += 1
        plain = plain_kernel(x, weight, extent, dilation, groups)
        return tag_extent(self.call_op(_ReplayedConv.apply, x, weight, kept, plain, dilation, groups), extent)

    def run(self, model, a, b):
        out = super().run(model, a, b)
        if self._calls != len(self.record.outputs):
            raise Unsupported("the model ran fewer convolutions than its recorded forward pass")
        return out
