"""The receptive field, stride and locality of a fusion model, derived by probing.

Nothing here trusts a model's ``receptive_field`` attribute. ``analyse(model)`` starts from the
analytic sum of ``(k - 1) * dilation`` over the Conv2d modules, then probes a float64 copy: it
back-propagates from output pixels of random inputs and takes the bounding box of the nonzero input
gradient (``probe_support``). A support that touches the probe border at every probe size means a
global operation (the model is then "non-local" and only the exact full-image path is used).
``representative_shape`` gives the smallest image with every window geometry of a larger one.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from .reference import run
from .state import double_copy, model_state

#: Probe sizes grow by this factor while the support touches the probe border.
PROBE_GROWTH = 2
#: Give up (declare the model non-local) once the probe is this many pixels wide.
MAX_PROBE = 160
#: Random inputs per probe; the support is the union over them.
PROBE_REPEATS = 3


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


def probe_support(twin: nn.Module, size: int, stride: int, gen: torch.Generator) -> tuple[int, int, int, int, bool]:
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
    state = model_state(model)
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
            up, down, left, right, touches = probe_support(twin, size, stride, gen)
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
    model_state(model).field = field
    return field


def receptive_field(model: nn.Module) -> int:
    """Side of the (probed) receptive field in pixels; 0 when the model is not local."""
    field = analyse(model)
    return field.size if field.local else 0


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
