"""The kept forward graph of the backward-pass paths, and batched backward passes through it.

``Backward`` runs one forward pass of a model on a whole pair, keeps its graph, and turns a stack
of (K, H, W) output seeds into the two (K, H, W) input gradients, vmapped or in a loop, whichever
is faster here. ``kept_graph`` makes one with the number of seeds per chunk that fits the memory
budget (``memory_budget_bytes``: ``$FUSION_DENSE_MEMORY_MB`` or ``MEMORY_BUDGET_BYTES``). The
coloured passes and the full-image path of ``dense_paths`` run on it.
"""
from __future__ import annotations

import time

import numpy as np
import torch
from torch import nn

from ..settings import VARIABLES, read
from .reference import run

#: Default bound on the extra memory of one chunk of vmapped backward passes.
MEMORY_BUDGET_BYTES = 1 << 30
#: Environment setting (MiB) that overrides it for the app, the service and the command line.
MEMORY_BUDGET_ENV = VARIABLES["dense_memory_mb"][0]


def memory_budget_bytes() -> int:
    """``$FUSION_DENSE_MEMORY_MB`` in bytes if set (at least 16 MiB, ``fusion.settings``), else
    ``MEMORY_BUDGET_BYTES``."""
    megabytes = read("dense_memory_mb")
    return MEMORY_BUDGET_BYTES if megabytes is None else megabytes << 20


def _chunk_size(model: nn.Module, height: int, width: int, itemsize: int, budget: int) -> int:
    """Colours per vmapped backward pass so that one chunk stays within ``budget`` bytes."""
    widest = max([m.out_channels for m in model.modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))]
                 + [m.in_channels for m in model.modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))]
                 + [2])
    per_colour = 4 * height * width * widest * itemsize  # a few live gradient tensors per colour
    return int(max(1, min(64, budget // per_colour)))


def _synchronize(device: torch.device) -> None:
    """Wait for the device's queued work (CUDA runs asynchronously; the CPU needs nothing)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class Backward:
    """Batched backward passes through one kept forward graph: (K, H, W) seeds -> two (K, H, W) grads.

    Two ways: one vmapped pass (``is_grads_batched``) or a loop of single passes. Which is faster
    depends on the backend (float64 convolutions on the CPU batch badly), so a few seeds run
    vmapped and a few as a loop, both timed, and the faster serves the rest. Models whose ops
    have no batching rule use the loop.
    """

    TRIAL = 4

    def __init__(self, model, ta, tb):
        self.a = ta[None, None].clone().requires_grad_(True)
        self.b = tb[None, None].clone().requires_grad_(True)
        with torch.enable_grad():
            self.out = run(model, self.a, self.b)
        self.timings: dict[str, float] = {}  # seconds per seed, by way (the trial)
        self.way: str | None = None

    def __call__(self, seeds: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.way is not None:
            return self._vmap(seeds) if self.way == "vmap" else self._loop(seeds)
        parts, rest = [], seeds
        for way in ("vmap", "loop"):  # trial: a few seeds each way, timed
            if self.way is not None or not len(rest):
                break
            trial, rest = rest[:self.TRIAL], rest[self.TRIAL:]
            _synchronize(seeds.device)
            start = time.perf_counter()
            try:
                parts.append(self._vmap(trial) if way == "vmap" else self._loop(trial))
            except (RuntimeError, NotImplementedError):  # an op without a batching rule
                self.way = "loop"
                parts.append(self._loop(trial))
            _synchronize(seeds.device)  # a GPU runs asynchronously: time the work, not its launch
            self.timings[way] = (time.perf_counter() - start) / len(trial)
        if self.way is None and len(self.timings) == 2:
            self.way = min(self.timings, key=self.timings.get)
        if len(rest):
            parts.append(self(rest))
        return torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])

    def _vmap(self, seeds):
        ga, gb = torch.autograd.grad(self.out, (self.a, self.b), seeds[:, None, None], retain_graph=True,
                                     allow_unused=True, is_grads_batched=True)
        return self._fill(ga, seeds), self._fill(gb, seeds)

    def _loop(self, seeds):
        grads = [torch.autograd.grad(self.out, (self.a, self.b), s[None, None], retain_graph=True,
                                     allow_unused=True) for s in seeds]
        return (torch.stack([self._fill(g[0], s)[0] for g, s in zip(grads, seeds, strict=True)]),
                torch.stack([self._fill(g[1], s)[0] for g, s in zip(grads, seeds, strict=True)]))

    @staticmethod
    def _fill(g, seeds):
        if g is None:
            return seeds.new_zeros(seeds.shape)
        return g.reshape(-1, *seeds.shape[-2:])


def kept_graph(model, ta, tb, memory_budget: int | None) -> tuple[Backward, int, np.ndarray]:
    """The shared forward graph of the backward-pass paths, the seeds per chunk within ``memory_budget``
    (None: ``memory_budget_bytes()``), and the fused image (H x W float32)."""
    height, width = ta.shape
    budget = memory_budget_bytes() if memory_budget is None else memory_budget
    backward = Backward(model, ta, tb)
    fused = backward.out.detach()[0, 0].to("cpu", torch.float32).numpy().copy()
    return backward, _chunk_size(model, height, width, ta.element_size(), budget), fused
