"""HDF5 export and import of a dense Jacobian (h5py).

File layout (also written into the file's ``layout`` attribute):

    /maps/guidance_a, guidance_b      (H, W) float32  dF(p)/da(p), dF(p)/db(p)
    /maps/influence_a, influence_b    (H, W) float32  sum over q of |dF(p)/da(q)|, |dF(p)/db(q)|
    /maps/mri_share                   (H, W) float32  influence_a / (influence_a + influence_b)
    /maps/fused                       (H, W) float32  the fused image
    /band/a, /band/b                  (H, W, rows, cols) float32, gzip, chunked; optional:
                                      band[r, c, i, j] = dF(r, c)/dx(r - up + i, c - left + j)
    attributes: format, format_version, method, reason, field (JSON: up, down, left, right,
                stride, local), receptive_field, model, weights_hash, pair_id, method_version
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from .dense import DenseJacobian
from .receptive_field import Field

FORMAT = "fusion-saliency dense Jacobian"
FORMAT_VERSION = 1
LAYOUT = __doc__.split("File layout (also written into the file's ``layout`` attribute):")[1].strip()


def save_hdf5(dense: DenseJacobian, path: str | os.PathLike) -> Path:
    """Write ``dense`` to ``path`` (written to a temporary file, then renamed into place)."""
    import h5py

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with h5py.File(tmp, "w") as f:
            f.attrs.update(format=FORMAT, format_version=FORMAT_VERSION, layout=LAYOUT, method=dense.method,
                           reason=dense.reason or "", field=json.dumps(dense.field.__dict__),
                           receptive_field=dense.receptive_field)
            for key in ("model", "weights_hash", "pair_id", "method_version"):
                f.attrs[key] = str(dense.meta.get(key, ""))
            maps = f.create_group("maps")
            for name, array in {**dense.maps(), "fused": dense.fused}.items():
                maps.create_dataset(name, data=np.asarray(array, np.float32))
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


def load_hdf5(path: str | os.PathLike) -> DenseJacobian:
    """Read a file written by ``save_hdf5``; raises ValueError for anything else."""
    import h5py

    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        raise ValueError(f"{path}: not a readable HDF5 file ({exc})") from exc
    with f:
        if f.attrs.get("format") != FORMAT:
            raise ValueError(f"{path}: not a {FORMAT} file")
        if int(f.attrs["format_version"]) > FORMAT_VERSION:
            raise ValueError(f"{path}: format version {f.attrs['format_version']} is newer than this library")
        maps = {name: f["maps"][name][()] for name in ("guidance_a", "guidance_b", "influence_a",
                                                         "influence_b", "fused")}
        band_a = f["band/a"][()] if "band" in f else None
        band_b = f["band/b"][()] if "band" in f else None
        meta = {key: str(f.attrs[key]) for key in ("model", "weights_hash", "pair_id", "method_version")}
        return DenseJacobian(**maps, method=str(f.attrs["method"]), field=Field(**json.loads(f.attrs["field"])),
                             band_a=band_a, band_b=band_b, reason=str(f.attrs["reason"]) or None, meta=meta)
