"""Shared setup of the benchmarks: models (bundled weights when present, else fresh) and a sample pair."""
from __future__ import annotations

import time

import numpy as np
import torch
from PIL import Image

import fusion
from fusion.data import load_sample
from fusion.models.registry import default_checkpoint_path

MAIN_MODELS = ["weighted-average", "funfusean", "masknet", "deepfuse", "deeppedestrian"]


def load_model(name: str) -> tuple[torch.nn.Module, str]:
    """The bundled checkpoint if it exists and loads, else fresh weights (seed 0); and which."""
    path = default_checkpoint_path(name)
    if path is not None and path.is_file():
        try:
            return fusion.create_model(name), "trained"
        except fusion.InvalidCheckpoint:
            pass
    torch.manual_seed(0)
    return fusion.create_model(name, checkpoint=None), "fresh" if path is not None else "no weights"


def sample_pair(size: int) -> tuple[np.ndarray, np.ndarray]:
    """The bundled axial-095 pair resized to size x size, float32 in [0, 1]."""
    a, b = load_sample("axial-095")
    if a.shape != (size, size):
        a, b = (np.asarray(Image.fromarray(x, mode="F").resize((size, size), Image.BILINEAR)) for x in (a, b))
    return fusion.io.check_pair(a, b)


def synchronize(device) -> None:
    """Wait for queued GPU work, so that a timer measures the work and not its launch."""
    device = torch.device(device)
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn, *args, device="cpu", **kwargs):
    """(seconds, fn(*args, **kwargs)), the device's queued work included."""
    synchronize(device)
    start = time.perf_counter()
    out = fn(*args, **kwargs)
    synchronize(device)
    return time.perf_counter() - start, out


def naive_backward_seconds(model, a, b, pixels) -> float:
    """The reference's method: one full-image forward kept, then one full-image backward per pixel.

    Runs on the model's device. Returns seconds per pixel (median over ``pixels``; the forward is
    not counted).
    """
    device = next(model.parameters(), torch.zeros(())).device
    ta = torch.from_numpy(a)[None, None].to(device).requires_grad_(True)
    tb = torch.from_numpy(b)[None, None].to(device).requires_grad_(True)
    out = model(ta, tb)
    times = []
    for r, c in pixels:
        seconds, _ = timed(torch.autograd.grad, out[0, 0, r, c], (ta, tb), retain_graph=True, allow_unused=True,
                           device=device)
        times.append(seconds)
    return float(np.median(times))
