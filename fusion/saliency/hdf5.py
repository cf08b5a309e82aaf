"""HDF5 export and import of a dense Jacobian (h5py).

Format versions: 1 had no ``/pair`` (still read, with ``inputs`` None); 2 added the
input images, so that a file alone reopens its pair (a ``fusion.io.Pair``, with a colour
PET's chroma and luminance range when the file holds them: optional, so version 2 still). ``load_hdf5`` treats a file as
untrusted: links, data stored outside the file, non-float or non-finite data,
inconsistent shapes, maps over ``max_pixels`` (default ``fusion.io.MAX_PIXELS``) and
chunks over ``MAX_CHUNK_BYTES`` are refused with ValueError before any data is read; a
banded Jacobian over ``max_band_bytes``, or one that would expand more than
``MAX_BAND_RATIO`` times its stored size (a compression bomb), is not read; only the
objects named below are read.

File layout (also written into the file's ``layout`` attribute):

    /maps/guidance_a, guidance_b      (H, W) float32  dF(p)/da(p), dF(p)/db(p)
    /maps/influence_a, influence_b    (H, W) float32  sum over q of |dF(p)/da(q)|, |dF(p)/db(q)|
    /maps/mri_share                   (H, W) float32  influence_a / (influence_a + influence_b)
    /maps/fused                       (H, W) float32  the fused image
    /pair/a, /pair/b                  (H, W) float32  the input images (MRI, PET's Y) in [0, 1]; optional
    /pair/pet_chroma                  (H, W, 2) float32  a colour PET's Cb, Cr in [0, 1]; optional, with
                                      /pair attribute pet_range (lo, hi): Y = lo + b * (hi - lo)
    a, b and F are luminance on the network's [0, 1] scale: the maps are dF_Y/dY_MRI and dF_Y/dY_PET
    /band/a, /band/b                  (H, W, rows, cols) float32, gzip, chunked; optional:
                                      band[r, c, i, j] = dF(r, c)/dx(r - up + i, c - left + j)
    attributes: format, format_version, method ("crops", "coloured" or "full-image": the path,
                fusion.saliency.Method), reason, field (JSON: up, down, left, right, stride, local),
                receptive_field, model, weights_hash, pair_id, method_version
"""
from __future__ import annotations

import dataclasses
import io
import json
import math
import os
from pathlib import Path

import numpy as np

from ..io import MAX_PIXELS, Pair
from .field import Field
from .methods import Method
from .result import DenseJacobian

FORMAT = "fusion-saliency dense Jacobian"
FORMAT_VERSION = 2
MAP_KEYS = ("guidance_a", "guidance_b", "influence_a", "influence_b", "fused")
META_KEYS = ("model", "weights_hash", "pair_id", "method_version")
#: Largest chunk of any dataset read (HDF5 decompresses a whole chunk to read any part of it).
MAX_CHUNK_BYTES = 16 * 2**20
#: A banded Jacobian is skipped when its data would be more than this many times its stored size.
MAX_BAND_RATIO = 32
LAYOUT = __doc__.split("File layout (also written into the file's ``layout`` attribute):")[1].strip()


def save_hdf5(dense: DenseJacobian, path: str | os.PathLike) -> Path:
    """Write ``dense`` to ``path`` (written to a temporary file, then renamed into place)."""
    import h5py

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with h5py.File(tmp, "w") as f:
            f.attrs.update(format=FORMAT, format_version=FORMAT_VERSION, layout=LAYOUT,
                           method=Method(dense.method).value, reason=dense.reason or "",
                           field=json.dumps(dense.field.__dict__),
                           receptive_field=dense.receptive_field)
            for key in META_KEYS:
                f.attrs[key] = str(dense.meta.get(key, ""))
            maps = f.create_group("maps")
            for name, array in {**dense.maps(), "fused": dense.fused}.items():
                maps.create_dataset(name, data=np.asarray(array, np.float32))
            if dense.inputs is not None:
                pair = f.create_group("pair")
                for name, array in zip("ab", dense.inputs, strict=True):
                    pair.create_dataset(name, data=np.asarray(array, np.float32))
                chroma = getattr(dense.inputs, "pet_chroma", None)
                if chroma is not None:
                    pair.create_dataset("pet_chroma", data=np.asarray(chroma, np.float32))
                    pair.attrs["pet_range"] = np.asarray(dense.inputs.pet_range, np.float64)
            if dense.band_a is not None:
                band = f.create_group("band")
                height, width, rows, cols = dense.band_a.shape
                chunks = (min(height, 8), min(width, 8), rows, cols)
                for name, array in (("a", dense.band_a), ("b", dense.band_b)):
                    band.create_dataset(name, data=array, chunks=chunks, compression="gzip",
                                        compression_opts=4, shuffle=True)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def load_hdf5(source, max_band_bytes: int | None = None, name: str | None = None,
              max_pixels: int = MAX_PIXELS) -> DenseJacobian:
    """Read a file written by ``save_hdf5`` (a path, the file's bytes or a binary file object).

    ``max_band_bytes``: a banded Jacobian (both inputs) larger than this, or more than
    ``MAX_BAND_RATIO`` times its stored size, is not read (``band_a`` is then None; rows
    are recomputed on demand). Maps over ``max_pixels`` are refused. Raises ValueError, starting
    with ``name`` (default: the path), for anything that is not a complete, consistent file
    of this format.
    """
    import h5py

    if name is None:
        name = "uploaded file" if isinstance(source, (bytes, bytearray)) or hasattr(source, "read") else str(source)
    if isinstance(source, (bytes, bytearray)):
        source = io.BytesIO(bytes(source))
    try:
        f = h5py.File(source, "r")
    except Exception as exc:  # noqa: BLE001 - h5py raises OSError, or ValueError for some bytes
        raise ValueError(f"{name}: not a readable HDF5 file ({exc})") from exc
    try:
        with f:
            return _read(f, max_band_bytes, max_pixels)
    except ValueError as exc:
        raise ValueError(f"{name}: {exc}") from exc
    except (OSError, KeyError, RuntimeError, TypeError, AttributeError, IndexError) as exc:
        raise ValueError(f"{name}: damaged or incomplete file ({type(exc).__name__}: {exc})") from exc


def _text(value) -> str:
    """A string attribute as str ("" for anything that is not a string)."""
    if isinstance(value, (bytes, np.bytes_)):
        return bytes(value).decode("utf-8", "replace")
    return str(value) if isinstance(value, str) else ""


def _dataset(f, path: str, ndim: int):
    """The float dataset at ``path``; links, external or virtual storage are refused."""
    import h5py

    node = f
    for part in path.split("/"):
        link = node.get(part, getlink=True)
        if link is None:
            raise ValueError(f"/{path} is missing")
        if not isinstance(link, h5py.HardLink):
            raise ValueError(f"/{path} is a link to somewhere else (refused)")
        node = node[part]
    if not isinstance(node, h5py.Dataset) or node.ndim != ndim or node.dtype.kind != "f" or node.dtype.itemsize > 8:
        raise ValueError(f"/{path} is not a {ndim}-D float dataset")
    if node.external or node.is_virtual:
        raise ValueError(f"/{path} keeps its data outside the file (refused)")
    if node.chunks is not None and math.prod(node.chunks) * node.dtype.itemsize > MAX_CHUNK_BYTES:
        raise ValueError(f"/{path} is stored in chunks of {node.chunks}, larger than the "
                         f"{MAX_CHUNK_BYTES // 2**20} MB allowed (refused)")
    return node


def _read_array(dataset, shape: tuple[int, ...]) -> np.ndarray:
    if dataset.shape != shape:
        raise ValueError(f"{dataset.name} is {dataset.shape}, expected {shape}")
    array = np.asarray(dataset[()], np.float32)
    if not np.isfinite(array).all():
        raise ValueError(f"{dataset.name} holds NaN or infinite values")
    return array


def _with_colour(f, inputs: Pair, shape: tuple[int, int]) -> Pair:
    """The pair with its PET's chroma and luminance range, checked: Cb, Cr in [0, 1], 0 <= lo < hi <= 1."""
    chroma = _read_array(_dataset(f, "pair/pet_chroma", 3), (*shape, 2))
    if chroma.min() < 0 or chroma.max() > 1:
        raise ValueError("/pair/pet_chroma holds values outside [0, 1]")
    raw = np.asarray(f["pair"].attrs.get("pet_range", []))
    if raw.shape != (2,) or raw.dtype.kind not in "fiu":
        raise ValueError("/pair has a pet_chroma but no pet_range (lo, hi)")
    lo, hi = (float(v) for v in raw)
    if not (math.isfinite(lo) and math.isfinite(hi) and 0 <= lo < hi <= 1):
        raise ValueError(f"/pair's pet_range ({lo:g}, {hi:g}) is not within 0 <= lo < hi <= 1")
    return Pair(inputs.mri, inputs.pet, chroma, (lo, hi))


def _field(text: str) -> Field:
    """The ``field`` attribute, checked: known keys, non-negative reach, stride at least 1."""
    try:
        raw = json.loads(text)
    except ValueError:
        raw = None
    known = {f.name for f in dataclasses.fields(Field)}
    if not isinstance(raw, dict) or not raw.keys() <= known:
        raise ValueError("the field attribute is not a receptive field")
    field = Field(**raw)
    reach = (field.up, field.down, field.left, field.right, field.stride)
    if (not all(isinstance(v, int) and 0 <= v <= 4096 for v in reach) or field.stride < 1
            or not isinstance(field.local, bool) or not isinstance(field.reason, (str, type(None)))):
        raise ValueError("the field attribute is not a receptive field")
    return field


def _read(f, max_band_bytes: int | None, max_pixels: int = MAX_PIXELS) -> DenseJacobian:
    if _text(f.attrs.get("format")) != FORMAT:
        raise ValueError(f"not a {FORMAT} file")
    version = int(f.attrs["format_version"])
    if version > FORMAT_VERSION:
        raise ValueError(f"format version {version} is newer than this library ({FORMAT_VERSION})")
    first = _dataset(f, f"maps/{MAP_KEYS[0]}", 2)
    shape = first.shape
    if not 0 < shape[0] * shape[1] <= max_pixels:
        raise ValueError(f"the maps are {shape[0]} x {shape[1]}, outside 1 to {max_pixels:,} pixels")
    maps = {key: _read_array(_dataset(f, f"maps/{key}", 2), shape) for key in MAP_KEYS}
    inputs = None
    if f.get("pair", getlink=True) is not None:  # never resolves a link
        inputs = Pair(*(_read_array(_dataset(f, f"pair/{key}", 2), shape) for key in "ab"))
        if f["pair"].get("pet_chroma", getlink=True) is not None:
            inputs = _with_colour(f, inputs, shape)
    field = _field(_text(f.attrs.get("field")))
    band_a = band_b = None
    if f.get("band", getlink=True) is not None:
        bands = [_dataset(f, f"band/{key}", 4) for key in "ab"]
        band_shape = (*shape, field.rows, field.cols)
        nbytes = 2 * 4 * math.prod(band_shape)
        stored = sum(band.id.get_storage_size() for band in bands)
        if (max_band_bytes is None or nbytes <= max_band_bytes) and nbytes <= MAX_BAND_RATIO * stored:
            band_a, band_b = (_read_array(band, band_shape) for band in bands)
    try:  # a former name (``methods.FORMER_NAMES``) reads as today's
        method = Method(_text(f.attrs.get("method")))
    except ValueError:
        method = None
    if method not in (Method.CROPS, Method.COLOURED, Method.FULL_IMAGE):
        raise ValueError(f"unknown method {_text(f.attrs.get('method'))!r}")
    meta = {key: _text(f.attrs.get(key)) for key in META_KEYS}
    return DenseJacobian(**maps, method=method, field=field, band_a=band_a, band_b=band_b,
                         reason=_text(f.attrs.get("reason")) or None, meta=meta, inputs=inputs)
