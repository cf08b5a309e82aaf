"""Cache keys and the checked blob format of every entry of the disk cache.

Keys are deterministic strings built from content hashes: of the model (class, constructor
arguments, state-dict bytes: ``weights_hash``), of the image pair (``pair_hash``) and of
``METHOD_VERSION`` (``cache_key``). A value is ``MAGIC + sha256(payload) + payload`` where the
payload is an ``np.savez`` archive of arrays and a JSON header, never a pickle (``pack``,
``unpack``): an entry whose checksum does not match is refused.
"""
from __future__ import annotations

import hashlib
import io
import json

import numpy as np
import torch
from torch import nn

#: Bump when a change of the algorithms or of their names changes stored results: old entries are then
#: ignored. Version 2: one name per path (``fusion.saliency.Method``; hovers on crops were "crop").
METHOD_VERSION = "2"
#: Earlier versions whose results hold the same numbers as this one's (only names changed): a result
#: read back from their HDF5 files is served as this version's (``SaliencyService.put_dense``).
SAME_NUMBERS_AS = ("1",)
MAGIC = b"FSC1"


def cache_key(kind: str, *parts) -> str:
    """The disk-cache key of an entry of ``kind`` ("pair", "fused", "dense", ...) named by ``parts``."""
    return "/".join(["fusion-saliency", f"v{METHOD_VERSION}", kind, *map(str, parts)])


def pair_hash(a: np.ndarray, b: np.ndarray, pet_chroma: np.ndarray | None = None,
              pet_range: tuple[float, float] | None = None) -> str:
    """Content hash of a validated pair (shape and float32 bytes of both images; a colour PET's
    chroma and Y range too, so a colour pair and its grey version differ)."""
    digest = hashlib.sha256(f"pair:{a.shape[0]}x{a.shape[1]}".encode())
    for x in (a, b):
        digest.update(np.ascontiguousarray(x, dtype=np.float32).tobytes())
    if pet_chroma is not None:
        lo, hi = pet_range if pet_range is not None else (0.0, 1.0)
        digest.update(f"colour:{float(lo)!r}:{float(hi)!r}".encode())
        digest.update(np.ascontiguousarray(pet_chroma, dtype=np.float32).tobytes())
    return digest.hexdigest()[:32]


def weights_hash(model: nn.Module) -> str:
    """Content hash of a model: class, constructor arguments (its repr) and state-dict bytes."""
    digest = hashlib.sha256(f"{type(model).__module__}.{type(model).__qualname__}\n{model!r}".encode())
    for name, tensor in model.state_dict().items():
        t = tensor.detach().cpu().contiguous()
        digest.update(f"{name}:{t.dtype}:{tuple(t.shape)}".encode())
        digest.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return digest.hexdigest()[:32]


def pack(arrays: dict[str, np.ndarray], header: dict) -> bytes:
    """Arrays and a JSON header -> MAGIC + sha256 + npz payload."""
    buf = io.BytesIO()
    np.savez(buf, __header__=np.frombuffer(json.dumps(header).encode(), np.uint8), **arrays)
    payload = buf.getvalue()
    return MAGIC + hashlib.sha256(payload).digest() + payload


def unpack(blob) -> tuple[dict[str, np.ndarray], dict]:
    """Inverse of ``pack``; raises ValueError for a damaged, partial or foreign entry."""
    if not isinstance(blob, (bytes, bytearray, memoryview)) or bytes(blob[:4]) != MAGIC:
        raise ValueError("not a fusion-saliency cache entry")
    blob = bytes(blob)
    checksum, payload = blob[4:36], blob[36:]
    if hashlib.sha256(payload).digest() != checksum:
        raise ValueError("checksum mismatch (damaged or partial entry)")
    with np.load(io.BytesIO(payload), allow_pickle=False) as archive:
        arrays = {k: archive[k] for k in archive.files}
    header = json.loads(arrays.pop("__header__").tobytes().decode())
    return arrays, header
