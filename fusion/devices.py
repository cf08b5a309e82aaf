"""Choosing the torch device from a user's setting ("auto", "cpu", "cuda", "cuda:1", ...)."""
from __future__ import annotations

import torch

from .errors import InvalidInput


def pick_device(spec: str | torch.device) -> torch.device:
    """``"auto"``: the first GPU if PyTorch sees one, else the CPU; any other name as torch spells it.

    Raises InvalidInput for a name torch does not know or a GPU this machine does not have, so that
    the command line and the dashboard say so instead of failing at the first tensor.
    """
    if isinstance(spec, torch.device):
        device = spec
    elif str(spec).strip().lower() == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    else:
        try:
            device = torch.device(str(spec).strip())
        except RuntimeError:
            raise InvalidInput(f"unknown device {spec!r}: use 'auto', 'cpu', 'cuda' or 'cuda:N'") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise InvalidInput(f"device {spec!r} asked for, but PyTorch sees no CUDA GPU here: use 'cpu' or 'auto'")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise InvalidInput(f"device {spec!r}: this machine has {torch.cuda.device_count()} CUDA GPU(s)")
    return device
