"""Checkpoints: plain state dicts beside a JSON model card that holds their sha256.

Only ``torch.load(..., weights_only=True)`` is ever used, so a pickled model
(or any pickle that would run code) is refused rather than executed.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import torch
from torch import nn

from .errors import InvalidCheckpoint
from .settings import read

#: Where the bundled checkpoints live; FUSION_CHECKPOINT_DIR overrides it (``fusion.settings``).
CHECKPOINT_DIR = read("checkpoint_dir")


def sha256_file(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def card_path(checkpoint: str | os.PathLike) -> Path:
    """The model card that belongs to a checkpoint: same name, ``.json``."""
    return Path(checkpoint).with_suffix(".json")


def read_card(checkpoint: str | os.PathLike) -> dict | None:
    """The checkpoint's model card, or None when it has none."""
    path = card_path(checkpoint)
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise InvalidCheckpoint(f"model card {path} is not valid JSON: {exc}") from exc


def load_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Load a state dict safely, checking it against its model card's sha256.

    Accepts a bare state dict or a training checkpoint ``{"model": state_dict, ...}``.
    Raises InvalidCheckpoint for a missing file, a hash mismatch, a pickle that
    is not plain tensors (a whole-model pickle, say) or anything not a state dict.
    """
    path = Path(path)
    if not path.is_file():
        raise InvalidCheckpoint(f"checkpoint {path} does not exist")
    card = read_card(path)
    if card is not None and card.get("sha256"):
        actual = sha256_file(path)
        if actual != card["sha256"]:
            raise InvalidCheckpoint(
                f"checkpoint {path} does not match its model card: sha256 {actual[:12]}... "
                f"expected {card['sha256'][:12]}...; the file was changed or damaged, refusing it")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unpickling failure means "refuse"
        raise InvalidCheckpoint(
            f"checkpoint {path} was refused: it is not a plain state dict of tensors "
            f"(whole-model pickles and arbitrary objects are never loaded). Detail: {exc}") from exc
    if isinstance(obj, dict) and isinstance(obj.get("model"), dict):
        obj = obj["model"]
    if not isinstance(obj, dict) or not all(
            isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items()):
        raise InvalidCheckpoint(f"checkpoint {path} does not hold a state dict (name -> tensor)")
    return obj


def apply_state_dict(model: nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    """Load ``state`` into ``model``, turning a mismatch into a readable error."""
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise InvalidCheckpoint(
            f"checkpoint {source} does not fit {type(model).__name__}: {exc}") from exc


def save_checkpoint(model: nn.Module, path: str | os.PathLike, card: dict) -> dict:
    """Write the model's state dict and its model card (with the file's sha256).

    Returns the card as written.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    torch.save(state, path)
    card = {**card, "checkpoint": path.name, "sha256": sha256_file(path)}
    card_path(path).write_text(json.dumps(card, indent=2, sort_keys=False) + "\n")
    return card
