"""Loading and validating image pairs.

Every image becomes a float32 H x W array min-max scaled to [0, 1]. Colour
images are converted to grey with 0.2989 R + 0.5870 G + 0.1140 B (the
convention of the Harvard atlas PET). Anything that cannot be fused raises
``InvalidInput`` with a message a user can act on.
"""
from __future__ import annotations

import io
import os
import warnings
from pathlib import Path

import numpy as np
from PIL import Image

from .errors import InvalidInput

#: Largest image accepted, in pixels per image (guards against decompression bombs).
MAX_PIXELS = 4096 * 4096
#: Smallest accepted side: below this there is nothing to explain.
MIN_SIDE = 8
_GREY_WEIGHTS = np.array([0.2989, 0.5870, 0.1140])
_NIFTI_SUFFIXES = (".nii", ".nii.gz")


def to_unit_grey(array: np.ndarray, name: str = "image") -> np.ndarray:
    """Validate an H x W (or H x W x 3/4 colour) array; return float32 H x W in [0, 1]."""
    array = np.asarray(array)
    if array.dtype == bool:
        array = array.astype(np.float32)
    if not (np.issubdtype(array.dtype, np.number)):
        raise InvalidInput(f"{name}: pixel values must be numbers, got dtype {array.dtype}")
    if np.iscomplexobj(array):
        raise InvalidInput(f"{name}: complex pixel values are not supported")
    if array.ndim == 3 and array.shape[-1] in (3, 4):
        array = array[..., :3].astype(np.float64) @ _GREY_WEIGHTS
    elif array.ndim == 3 and array.shape[-1] == 1:
        array = array[..., 0]
    if array.ndim != 2:
        raise InvalidInput(f"{name}: expected a 2-D grey or colour image, got shape {array.shape}")
    h, w = array.shape
    if h < MIN_SIDE or w < MIN_SIDE:
        raise InvalidInput(f"{name}: image is {h} x {w}; both sides must be at least {MIN_SIDE}")
    if h * w > MAX_PIXELS:
        raise InvalidInput(f"{name}: image is {h} x {w}, more than the {MAX_PIXELS:,} pixels allowed")
    array = array.astype(np.float64)
    if not np.isfinite(array).all():
        raise InvalidInput(f"{name}: image contains NaN or infinite values")
    lo, hi = float(array.min()), float(array.max())
    if hi - lo <= 0:
        raise InvalidInput(f"{name}: image is constant (every pixel is {lo:g}); nothing to fuse")
    return ((array - lo) / (hi - lo)).astype(np.float32)


def _read_raster(data: bytes, name: str) -> np.ndarray:
    """Decode PNG, GIF, TIFF, JPEG, BMP... with Pillow, refusing decompression bombs."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as img:
                w, h = img.size
                if w * h > MAX_PIXELS:
                    raise InvalidInput(f"{name}: image is {h} x {w} pixels, more than the "
                                       f"{MAX_PIXELS:,} allowed (refusing a possible decompression bomb)")
                img.seek(0)  # first frame of an animated GIF or multi-page TIFF
                if img.mode in ("P", "PA", "LA", "RGBA", "CMYK", "YCbCr", "HSV", "1", "L;16"):
                    img = img.convert("RGB" if img.mode != "1" else "L")
                img.load()
                return np.asarray(img)
    except InvalidInput:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise InvalidInput(f"{name}: refusing a decompression bomb ({exc})") from exc
    except Exception as exc:  # noqa: BLE001 - Pillow raises many types for damaged files
        raise InvalidInput(f"{name}: not a readable image file ({type(exc).__name__}: {exc})") from exc


def _read_npy(data: bytes, name: str) -> np.ndarray:
    try:
        return np.load(io.BytesIO(data), allow_pickle=False)
    except Exception as exc:  # noqa: BLE001
        raise InvalidInput(f"{name}: not a readable .npy array ({exc})") from exc


def _read_nifti(path: Path, name: str, axis: int = 2, index: int | None = None) -> np.ndarray:
    """The middle slice (or ``index``) of a 3-D NIfTI volume along ``axis``."""
    import nibabel as nib

    try:
        volume = nib.load(str(path))
        shape = volume.shape
        if len(shape) == 2:
            return np.asarray(volume.dataobj)
        if len(shape) != 3 or np.prod(shape[:2]) > MAX_PIXELS * 64:
            raise InvalidInput(f"{name}: expected a 2-D or 3-D NIfTI volume, got shape {shape}")
        index = shape[axis] // 2 if index is None else index
        if not 0 <= index < shape[axis]:
            raise InvalidInput(f"{name}: slice {index} is outside the volume's {shape[axis]} slices")
        return np.asarray(volume.dataobj[tuple(index if i == axis else slice(None) for i in range(3))])
    except InvalidInput:
        raise
    except Exception as exc:  # noqa: BLE001
        raise InvalidInput(f"{name}: not a readable NIfTI volume ({exc})") from exc


def load_image(source: str | os.PathLike | bytes, name: str | None = None) -> np.ndarray:
    """Load one image (a path, or raw file bytes) as float32 H x W in [0, 1].

    Formats: PNG, GIF, TIFF, JPEG, BMP (Pillow), NumPy ``.npy``, NIfTI
    ``.nii``/``.nii.gz`` (the middle axial slice). Raises InvalidInput.
    """
    if isinstance(source, (bytes, bytearray)):
        data, name = bytes(source), name or "uploaded file"
        suffix = Path(name).suffix.lower()
        is_nifti = name.lower().endswith(_NIFTI_SUFFIXES)
    else:
        path = Path(source)
        name = name or path.name
        if not path.is_file():
            raise InvalidInput(f"{name}: no such file: {path}")
        if path.stat().st_size == 0:
            raise InvalidInput(f"{name}: the file is empty")
        is_nifti = path.name.lower().endswith(_NIFTI_SUFFIXES)
        if is_nifti:
            return to_unit_grey(_read_nifti(path, name), name)
        data, suffix = path.read_bytes(), path.suffix.lower()
    if not data:
        raise InvalidInput(f"{name}: the file is empty")
    if is_nifti:
        import tempfile

        with tempfile.TemporaryDirectory() as tmp:
            tmp_path = Path(tmp) / Path(name).name
            tmp_path.write_bytes(data)
            return to_unit_grey(_read_nifti(tmp_path, name), name)
    if suffix == ".npy" or data[:6] == b"\x93NUMPY":
        return to_unit_grey(_read_npy(data, name), name)
    return to_unit_grey(_read_raster(data, name), name)


def check_pair(a: np.ndarray, b: np.ndarray, names: tuple[str, str] = ("MRI", "PET")) -> tuple[np.ndarray, np.ndarray]:
    """Validate two arrays as a co-registered pair; return them as unit grey float32."""
    a, b = to_unit_grey(a, names[0]), to_unit_grey(b, names[1])
    if a.shape != b.shape:
        raise InvalidInput(f"the images differ in size: {names[0]} is {a.shape[0]} x {a.shape[1]}, "
                           f"{names[1]} is {b.shape[0]} x {b.shape[1]}; a pair must be co-registered")
    return a, b


def load_pair(path_a: str | os.PathLike | bytes, path_b: str | os.PathLike | bytes,
              names: tuple[str, str] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Load a co-registered image pair as two float32 H x W arrays in [0, 1].

    Raises:
        InvalidInput: a file is missing, damaged, not an image, empty, constant,
            non-finite, too large, or the two differ in size.
    """
    if names is None:
        names = tuple(label if isinstance(p, (bytes, bytearray)) else Path(p).name
                      for p, label in ((path_a, "first image"), (path_b, "second image")))
    a = load_image(path_a, names[0])
    b = load_image(path_b, names[1])
    return check_pair(a, b, names)
