"""Reading image files (PNG, GIF, TIFF, JPEG, BMP, ``.npy``, NIfTI) into raw pixel arrays.

Files are untrusted: the encoded size is bounded (``max_bytes``) and the pixel
count is read from the header (Pillow's lazy open, the ``.npy`` header, the
NIfTI header, decompressing only its first bytes) and checked against
``max_pixels`` before any pixel data is read or decompressed. ``fusion.io`` turns
the arrays into network inputs; everything here raises ``InvalidInput``.
"""
from __future__ import annotations

import gzip
import io
import math
import os
import re
import warnings
from pathlib import Path

import numpy as np
from PIL import Image

from .errors import InvalidInput

#: Largest image accepted, in pixels per image (guards against decompression bombs).
MAX_PIXELS = 4096 * 4096
#: Largest encoded file accepted (a path's size on disk, or the bytes passed).
MAX_FILE_BYTES = 256 * 2**20
#: Largest NIfTI volume accepted, in bytes of (decompressed) voxel data.
MAX_VOLUME_BYTES = 256 * 2**20
#: Smallest accepted side: below this there is nothing to explain.
MIN_SIDE = 8
_NIFTI_SUFFIXES = (".nii", ".nii.gz")
_NIFTI_HEAD = 540  # a NIfTI-2 header; NIfTI-1 needs the first 348 bytes
_GZIP_MAGIC = b"\x1f\x8b"


def check_size(shape, name: str, max_pixels: int) -> None:
    """Both sides at least MIN_SIDE, at most ``max_pixels`` pixels (from a header or an array)."""
    h, w = (int(s) for s in shape[:2])
    if h < MIN_SIDE or w < MIN_SIDE:
        raise InvalidInput(f"{name}: image is {h} x {w}; both sides must be at least {MIN_SIDE}")
    if h * w > max_pixels:
        raise InvalidInput(f"{name}: image is {h} x {w} pixels, more than the {max_pixels:,} allowed")


def _read_raster(data: bytes, name: str, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """Decode PNG, GIF, TIFF, JPEG, BMP... with Pillow; the size is checked before decoding."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as img:
                w, h = img.size  # from the header: nothing decoded yet
                if w * h > max_pixels:
                    raise InvalidInput(f"{name}: image is {h} x {w} pixels, more than the {max_pixels:,} "
                                       "allowed (refused before decoding)")
                img.seek(0)  # first frame of an animated GIF or multi-page TIFF
                if img.size != (w, h) and img.size[0] * img.size[1] > max_pixels:
                    raise InvalidInput(f"{name}: the first frame is larger than the {max_pixels:,} pixels allowed")
                if img.mode in ("P", "PA", "LA", "RGBA", "CMYK", "YCbCr", "HSV", "1", "L;16"):
                    img = img.convert("RGB" if img.mode != "1" else "L")
                img.load()
                return np.asarray(img)
    except InvalidInput:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        said = re.search(r"\((\d+) pixels\)", str(exc))  # Pillow's own check, at open, from the header
        size = f" (its header says {int(said.group(1)):,})" if said else ""
        raise InvalidInput(f"{name}: image is more than the {max_pixels:,} pixels allowed{size}; refused before "
                           "decoding (a possible decompression bomb)") from exc
    except Exception as exc:  # noqa: BLE001 - Pillow raises many types for damaged files
        raise InvalidInput(f"{name}: not a readable image file ({type(exc).__name__}: {exc})") from exc


def _read_npy(data: bytes, name: str, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """A ``.npy`` array; its header (shape, dtype) is checked before the data is read."""
    fmt = np.lib.format
    fp = io.BytesIO(data)
    try:
        version = fmt.read_magic(fp)
        if version == (1, 0):
            shape, _, dtype = fmt.read_array_header_1_0(fp)
        elif version == (2, 0):
            shape, _, dtype = fmt.read_array_header_2_0(fp)
        else:
            raise ValueError(f"format version {version[0]}.{version[1]} is not supported")
    except Exception as exc:  # noqa: BLE001 - numpy raises ValueError or others for damaged headers
        raise InvalidInput(f"{name}: not a readable .npy array ({exc})") from exc
    if dtype.hasobject or dtype.kind not in "biufc" or dtype.fields is not None:
        raise InvalidInput(f"{name}: not a readable .npy array (dtype {dtype} is not numeric; "
                           "object arrays are refused)")
    if not (len(shape) == 2 or (len(shape) == 3 and shape[-1] in (1, 3, 4))):
        raise InvalidInput(f"{name}: expected a 2-D grey or colour image, got shape {tuple(shape)}")
    check_size(shape, name, max_pixels)
    if len(data) - fp.tell() < math.prod(shape) * dtype.itemsize:
        raise InvalidInput(f"{name}: the .npy file is truncated (its header promises {tuple(shape)} {dtype})")
    try:
        return np.load(io.BytesIO(data), allow_pickle=False)
    except Exception as exc:  # noqa: BLE001
        raise InvalidInput(f"{name}: not a readable .npy array ({exc})") from exc


def _nifti_header(head: bytes, name: str, max_pixels: int, stored_bytes: int | None):
    """Parse and check a NIfTI-1/2 header; returns (header class, shape).

    ``stored_bytes``: size of an uncompressed file (None for gzip), to refuse truncated data.
    """
    import nibabel as nib

    sizes = {int.from_bytes(head[:4], order) for order in ("little", "big")} if len(head) >= 4 else set()
    klass = nib.Nifti2Header if 540 in sizes else nib.Nifti1Header if 348 in sizes else None
    if klass is None:
        raise InvalidInput(f"{name}: not a readable NIfTI volume (no NIfTI-1 or NIfTI-2 header)")
    needed = 540 if klass is nib.Nifti2Header else 348
    if len(head) < needed:
        raise InvalidInput(f"{name}: not a readable NIfTI volume (the header is cut short)")
    try:
        header = klass.from_fileobj(io.BytesIO(head[:needed]))
        shape, dtype = tuple(int(s) for s in header.get_data_shape()), header.get_data_dtype()
        offset = int(header.get_data_offset())
    except Exception as exc:  # noqa: BLE001 - nibabel raises several types for bad headers
        raise InvalidInput(f"{name}: not a readable NIfTI volume ({exc})") from exc
    if len(shape) not in (2, 3) or min(shape) < 1:
        raise InvalidInput(f"{name}: expected a 2-D or 3-D NIfTI volume, got shape {shape}")
    if dtype.names not in (None, ("R", "G", "B"), ("R", "G", "B", "A")) or (
            dtype.names is None and dtype.kind not in "biuf"):
        raise InvalidInput(f"{name}: NIfTI data type {dtype} is not supported (grey numbers, RGB24 or RGBA32 only)")
    check_size(shape, name, max_pixels)
    nbytes = math.prod(shape) * dtype.itemsize
    if nbytes > MAX_VOLUME_BYTES:
        raise InvalidInput(f"{name}: the volume {' x '.join(map(str, shape))} ({dtype}) holds {nbytes / 2**20:,.0f} MB "
                           f"of data, more than the {MAX_VOLUME_BYTES / 2**20:,.0f} MB allowed")
    if stored_bytes is not None and offset + nbytes > stored_bytes:
        raise InvalidInput(f"{name}: the NIfTI file is truncated (its header promises {nbytes:,} bytes of data)")
    return klass, shape


def _nifti_slice(image, shape: tuple[int, ...], name: str) -> np.ndarray:
    """The middle slice along the last axis of a checked, lazily loaded NIfTI image.

    An (H, W, 3) image is one colour slice; RGB24 / RGBA32 voxels become (H, W, 3).
    """
    try:
        if len(shape) == 2 or shape[2] == 3:
            data = np.asarray(image.dataobj)
        else:
            data = np.asarray(image.dataobj[:, :, shape[2] // 2])
        if data.dtype.names is not None:
            data = np.stack([data[c] for c in "RGB"], axis=-1)
        return data
    except Exception as exc:  # noqa: BLE001 - damaged or cut data
        raise InvalidInput(f"{name}: not a readable NIfTI volume ({type(exc).__name__}: {exc})") from exc


def _read_nifti_bytes(data: bytes, name: str, max_pixels: int) -> np.ndarray:
    """The middle axial slice of NIfTI bytes (``.nii`` or gzip); only the header is read before the checks."""
    from nibabel.fileholders import FileHolder

    zipped = data[:2] == _GZIP_MAGIC

    def stream():
        return gzip.GzipFile(fileobj=io.BytesIO(data)) if zipped else io.BytesIO(data)

    try:
        head = stream().read(_NIFTI_HEAD)  # gzip: decompresses only the first bytes
    except Exception as exc:  # noqa: BLE001 - bad gzip stream
        raise InvalidInput(f"{name}: not a readable NIfTI volume ({exc})") from exc
    klass, shape = _nifti_header(head, name, max_pixels, None if zipped else len(data))
    image_class = {348: "Nifti1Image", 540: "Nifti2Image"}[klass.sizeof_hdr]
    import nibabel as nib

    try:
        fileobj = stream()
        image = getattr(nib, image_class).from_file_map({"header": FileHolder(fileobj=fileobj),
                                                         "image": FileHolder(fileobj=fileobj)})
    except Exception as exc:  # noqa: BLE001
        raise InvalidInput(f"{name}: not a readable NIfTI volume ({exc})") from exc
    return _nifti_slice(image, shape, name)


def _read_nifti_path(path: Path, name: str, max_pixels: int) -> np.ndarray:
    import nibabel as nib

    try:
        with path.open("rb") as raw:
            zipped = raw.read(2) == _GZIP_MAGIC
            raw.seek(0)
            head = (gzip.GzipFile(fileobj=raw) if zipped else raw).read(_NIFTI_HEAD)
    except Exception as exc:  # noqa: BLE001
        raise InvalidInput(f"{name}: not a readable NIfTI volume ({exc})") from exc
    _, shape = _nifti_header(head, name, max_pixels, None if zipped else path.stat().st_size)
    try:
        image = nib.load(str(path))
    except Exception as exc:  # noqa: BLE001
        raise InvalidInput(f"{name}: not a readable NIfTI volume ({exc})") from exc
    return _nifti_slice(image, shape, name)


def _too_big(size: int, name: str, max_bytes: int) -> InvalidInput:
    return InvalidInput(f"{name}: the file is {size / 2**20:,.1f} MB, more than the "
                        f"{max_bytes / 2**20:,.1f} MB allowed")


def read_source(source: str | os.PathLike | bytes, name: str | None, max_pixels: int,
                 max_bytes: int) -> tuple[np.ndarray, str]:
    """The raw pixels of one image (a path, or raw file bytes) and its name for messages."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        name = name or "uploaded file"
        if len(source) > max_bytes:
            raise _too_big(len(source), name, max_bytes)
        data = bytes(source)
        suffix = Path(name).suffix.lower()
        is_nifti = name.lower().endswith(_NIFTI_SUFFIXES)
    else:
        path = Path(source)
        name = name or path.name
        if not path.is_file():
            raise InvalidInput(f"{name}: no such file: {path}")
        size = path.stat().st_size
        if size == 0:
            raise InvalidInput(f"{name}: the file is empty")
        if size > max_bytes:
            raise _too_big(size, name, max_bytes)
        if path.name.lower().endswith(_NIFTI_SUFFIXES):
            return _read_nifti_path(path, name, max_pixels), name
        data, suffix, is_nifti = path.read_bytes(), path.suffix.lower(), False
    if not data:
        raise InvalidInput(f"{name}: the file is empty")
    if is_nifti:
        return _read_nifti_bytes(data, name, max_pixels), name
    if suffix == ".npy" or data[:6] == b"\x93NUMPY":
        return _read_npy(data, name, max_pixels), name
    return _read_raster(data, name, max_pixels), name
