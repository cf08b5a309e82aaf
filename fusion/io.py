"""Loading and validating image pairs, grey or with a colour PET.

Every image becomes a float32 (H, W) array min-max scaled to [0, 1]: the network
input. A colour image (RGB, palette, CMYK... or an (H, W, 3) array) is converted to
ITU-R BT.601 full-range YCbCr (``fusion.ycbcr``, as JPEG and Pillow); an image whose
three channels are equal is grey. A colour MRI becomes its luminance Y. A colour
PET/SPECT keeps its chroma: ``load_pair`` returns a ``Pair`` whose ``pet`` is the PET's
Y min-max scaled for the network, ``pet_chroma`` its Cb/Cr (H, W, 2) and ``pet_range``
the (lo, hi) of Y on [0, 1] that was scaled, so Y = lo + pet * (hi - lo).

Min-max scaling and colour: the networks and the saliency see only the scaled Y, so
the Jacobians are dF_Y/dY_MRI and dF_Y/dY_PET on the network's [0, 1] scale (per unit
of scaled luminance). ``Pair.colour_fused`` maps a fused Y back onto the PET's range
(lo + F * (hi - lo)) and puts PET's Cb/Cr back; where that colour is brighter than
RGB can show, the chroma is moved towards grey just enough (``fusion.ycbcr.rgb_with_y``),
so the luminance of the colour image is the network's output, exactly. A grey PET
has no chroma and ``pet_range`` (0, 1): its fused image stays on the network's scale.

Colour values on [0, 1]: 8-bit images / 255, 16-bit / 65535; other arrays are taken as
they are when within [0, 1], as 8-bit values when within [0, 255], else divided by their
maximum; negative colour values are refused. An alpha channel is dropped.

Anything that cannot be fused raises ``InvalidInput`` with a message a user can act on.
Files are untrusted: ``fusion.readers`` bounds their size and pixel count before decoding.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import InvalidInput
from .readers import MAX_FILE_BYTES, MAX_PIXELS, MAX_VOLUME_BYTES, MIN_SIDE, check_size, read_source  # noqa: F401
from .ycbcr import RGB_TO_YCBCR, rgb_with_y

_GREY_WEIGHTS = RGB_TO_YCBCR[0]  # BT.601 luminance


def image_array(array: np.ndarray, name: str = "image", max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """Check an image array's type, shape and size; returns (H, W) or (H, W, 3) (alpha dropped)."""
    array = np.asarray(array)
    if array.dtype == bool:
        array = array.astype(np.float32)
    if not (np.issubdtype(array.dtype, np.number)):
        raise InvalidInput(f"{name}: pixel values must be numbers, got dtype {array.dtype}")
    if np.iscomplexobj(array):
        raise InvalidInput(f"{name}: complex pixel values are not supported")
    if array.ndim == 3 and array.shape[-1] in (3, 4):
        array = array[..., :3]
    elif array.ndim == 3 and array.shape[-1] == 1:
        array = array[..., 0]
    if array.ndim != 2 and not (array.ndim == 3 and array.shape[-1] == 3):
        raise InvalidInput(f"{name}: expected a 2-D grey or colour image (H x W, or H x W x 3 or 4 channels), "
                           f"got shape {array.shape}")
    check_size(array.shape, name, max_pixels)
    return array


def to_unit_grey(array: np.ndarray, name: str = "image", max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """Validate an H x W (or H x W x 3/4 colour) array; return float32 H x W in [0, 1] (colour: its Y)."""
    array = image_array(array, name, max_pixels)
    if array.ndim == 3:
        array = array.astype(np.float64) @ _GREY_WEIGHTS
    return _min_max(array, name)[0]


def _min_max(array: np.ndarray, name: str) -> tuple[np.ndarray, float, float]:
    """(H, W) -> (float32 (H, W) scaled to [0, 1], lo, hi); non-finite or constant images are refused."""
    array = np.asarray(array, np.float64)
    if not np.isfinite(array).all():
        raise InvalidInput(f"{name}: image contains NaN or infinite values")
    lo, hi = float(array.min()), float(array.max())
    if hi - lo <= 0:
        raise InvalidInput(f"{name}: image is constant (every pixel is {lo:g}); nothing to fuse")
    return ((array - lo) / (hi - lo)).astype(np.float32), lo, hi


@dataclass(frozen=True, eq=False)
class ColourImage:
    """One image as the networks see it: ``y`` (H, W) float32 luminance min-max scaled to [0, 1];
    ``chroma`` (H, W, 2) float32 Cb, Cr in [0, 1], None for a grey image; ``y_range`` (lo, hi):
    the Y on [0, 1] that was scaled (Y = lo + y * (hi - lo)), (0, 1) for a grey image."""

    y: np.ndarray
    chroma: np.ndarray | None = None
    y_range: tuple[float, float] = (0.0, 1.0)


def _unit_rgb(rgb: np.ndarray, name: str) -> np.ndarray:
    """(H, W, 3) colour values -> float64 RGB on [0, 1] (see the module docstring for the scale)."""
    if rgb.dtype in (np.uint8, np.uint16):
        return rgb.astype(np.float64) / np.iinfo(rgb.dtype).max
    values = rgb.astype(np.float64)
    if not np.isfinite(values).all():
        raise InvalidInput(f"{name}: image contains NaN or infinite values")
    lo, hi = float(values.min()), float(values.max())
    if lo < 0:
        raise InvalidInput(f"{name}: colour values must not be negative (the smallest is {lo:g}); give RGB "
                           "on [0, 1] or [0, 255], or a grey image")
    return values if hi <= 1 else values / (255.0 if hi <= 255 else hi)


def to_unit_colour(array: np.ndarray, name: str = "image", max_pixels: int = MAX_PIXELS) -> ColourImage:
    """Validate an (H, W) or (H, W, 3/4) array; its scaled luminance, and its chroma when it has colour.

    Three equal channels are grey (chroma None). Raises InvalidInput.
    """
    array = image_array(array, name, max_pixels)
    if array.ndim == 2:
        return ColourImage(_min_max(array, name)[0])
    if (array[..., 0] == array[..., 1]).all() and (array[..., 1] == array[..., 2]).all():
        return ColourImage(_min_max(array[..., 0], name)[0])
    rgb = _unit_rgb(array, name)
    y, lo, hi = _min_max(rgb @ _GREY_WEIGHTS, name)
    chroma = np.clip(rgb @ RGB_TO_YCBCR[1:].T + 0.5, 0.0, 1.0).astype(np.float32)  # as rgb_to_ycbcr, less memory
    return ColourImage(y, chroma, (lo, hi))


def load_image(source: str | os.PathLike | bytes, name: str | None = None, max_pixels: int = MAX_PIXELS,
               max_bytes: int = MAX_FILE_BYTES) -> np.ndarray:
    """Load one image (a path, or raw file bytes) as float32 H x W in [0, 1] (a colour image: its Y).

    Formats: PNG, GIF, TIFF, JPEG, BMP (Pillow), NumPy ``.npy``, NIfTI
    ``.nii``/``.nii.gz`` (the middle axial slice). Files over ``max_bytes`` and
    images over ``max_pixels`` (read from the header, before decoding) are refused.
    ``name`` is only shown in messages. Raises InvalidInput.
    """
    array, name = read_source(source, name, max_pixels, max_bytes)
    return to_unit_grey(array, name, max_pixels)


def load_colour_image(source: str | os.PathLike | bytes, name: str | None = None, max_pixels: int = MAX_PIXELS,
                      max_bytes: int = MAX_FILE_BYTES) -> ColourImage:
    """Like ``load_image``, keeping a colour image's chroma (``ColourImage``). Raises InvalidInput."""
    array, name = read_source(source, name, max_pixels, max_bytes)
    return to_unit_colour(array, name, max_pixels)


def check_pair(a: np.ndarray, b: np.ndarray, names: tuple[str, str] = ("MRI", "PET")) -> tuple[np.ndarray, np.ndarray]:
    """Validate two arrays as a co-registered pair; return them as unit grey float32 (colour: Y)."""
    a, b = to_unit_grey(a, names[0]), to_unit_grey(b, names[1])
    _check_same_size(a, b, names)
    return a, b


def _check_same_size(a: np.ndarray, b: np.ndarray, names: tuple[str, str]) -> None:
    if a.shape[:2] != b.shape[:2]:
        raise InvalidInput(f"the images differ in size: {names[0]} is {a.shape[0]} x {a.shape[1]}, "
                           f"{names[1]} is {b.shape[0]} x {b.shape[1]}; a pair must be co-registered")


@dataclass(frozen=True, eq=False)
class Pair:
    """A co-registered pair as the networks see it, with the PET's colour.

    ``mri``, ``pet``: (H, W) float32 in [0, 1] (the PET's luminance Y, min-max scaled).
    ``pet_chroma``: (H, W, 2) float32 Cb, Cr in [0, 1], or None for a grey PET.
    ``pet_range``: (lo, hi), the PET's Y on [0, 1] that was scaled: Y = lo + pet * (hi - lo);
    (0, 1) for a grey PET. Unpacks and indexes as ``(mri, pet)``.
    """

    mri: np.ndarray
    pet: np.ndarray
    pet_chroma: np.ndarray | None = None
    pet_range: tuple[float, float] = (0.0, 1.0)

    def __iter__(self):
        return iter((self.mri, self.pet))

    def __len__(self) -> int:
        return 2

    def __getitem__(self, index):
        return (self.mri, self.pet)[index]

    @property
    def is_colour(self) -> bool:
        return self.pet_chroma is not None

    @property
    def shape(self) -> tuple[int, int]:
        return self.mri.shape

    def colour_fused(self, fused_y: np.ndarray) -> np.ndarray:
        """(H, W) fused Y on the network's scale -> (H, W, 3) float32 RGB in [0, 1].

        ``fused_y`` is clipped to [0, 1] and put on the PET's range (lo + F * (hi - lo)); a colour
        PET's Cb/Cr are put back (moved towards grey only where the colour cannot be that bright,
        so the result's Y is exactly that luminance); a grey PET gives three equal channels.
        """
        fused = np.clip(np.asarray(fused_y, np.float64), 0.0, 1.0)
        if fused.shape != self.pet.shape:
            raise ValueError(f"the fused image is {fused.shape}, the pair {self.pet.shape}")
        lo, hi = self.pet_range
        y = lo + fused * (hi - lo)
        if self.pet_chroma is None:
            return np.repeat(y[..., None], 3, axis=-1).astype(np.float32)
        return rgb_with_y(y, self.pet_chroma)

    def colour_pet(self) -> np.ndarray:
        """The PET as (H, W, 3) float32 RGB in [0, 1] (grey: three equal channels)."""
        return self.colour_fused(self.pet)


def check_colour_pair(a: np.ndarray, b: np.ndarray, pet_chroma: np.ndarray | None = None,
                      pet_range: tuple[float, float] | None = None, names: tuple[str, str] = ("MRI", "PET"),
                      max_pixels: int = MAX_PIXELS) -> Pair:
    """Validate a pair of arrays, keeping the PET's colour; returns a ``Pair``.

    Without ``pet_chroma``, ``b`` may be grey (H, W) or colour (H, W, 3/4): its chroma is kept.
    With ``pet_chroma`` (H, W, 2) Cb/Cr in [0, 1], ``b`` is the PET's Y (H, W) and ``pet_range``
    its (lo, hi) on [0, 1] (default (0, 1)); a ``b`` that does not span [0, 1] is rescaled and its
    range adjusted to match. A grey PET's ``pet_range`` is ignored. Raises InvalidInput.
    """
    mri = to_unit_grey(a, names[0], max_pixels)
    if pet_chroma is None:
        pet = to_unit_colour(b, names[1], max_pixels)
        _check_same_size(mri, pet.y, names)
        return Pair(mri, pet.y, pet.chroma, pet.y_range)
    raw = np.asarray(b)
    if raw.ndim != 2:
        raise InvalidInput(f"{names[1]}: with its chroma, give the PET's luminance as an H x W array, "
                           f"got shape {raw.shape}")
    y, b_lo, b_hi = _min_max(image_array(raw, names[1], max_pixels), names[1])
    _check_same_size(mri, y, names)
    chroma = np.asarray(pet_chroma)
    if chroma.shape != (*y.shape, 2) or not np.issubdtype(chroma.dtype, np.number) or np.iscomplexobj(chroma):
        raise InvalidInput(f"{names[1]}: the chroma must be a {y.shape[0]} x {y.shape[1]} x 2 array of Cb, Cr "
                           f"numbers, got shape {chroma.shape} ({chroma.dtype})")
    chroma = chroma.astype(np.float64)
    if not (np.isfinite(chroma).all() and chroma.min() >= 0 and chroma.max() <= 1):
        raise InvalidInput(f"{names[1]}: the chroma (Cb, Cr) must be finite and in [0, 1]")
    lo, hi = _checked_range((0.0, 1.0) if pet_range is None else pet_range, names[1])
    lo, hi = lo + b_lo * (hi - lo), lo + b_hi * (hi - lo)  # b itself was on [0, 1] of that range
    if not (-1e-6 <= lo < hi <= 1 + 1e-6):
        raise InvalidInput(f"{names[1]}: the luminance range ({lo:g}, {hi:g}) is not within [0, 1]")
    return Pair(mri, y, chroma.astype(np.float32), (max(lo, 0.0), min(hi, 1.0)))


def _checked_range(pet_range, name: str) -> tuple[float, float]:
    try:
        lo, hi = (float(v) for v in pet_range)
    except (TypeError, ValueError):
        raise InvalidInput(f"{name}: the luminance range must be two numbers (lo, hi), got {pet_range!r}") from None
    if not (math.isfinite(lo) and math.isfinite(hi) and 0 <= lo < hi <= 1):
        raise InvalidInput(f"{name}: the luminance range must satisfy 0 <= lo < hi <= 1, got ({lo:g}, {hi:g})")
    return lo, hi


def load_pair(path_a: str | os.PathLike | bytes, path_b: str | os.PathLike | bytes,
              names: tuple[str, str] | None = None, max_pixels: int = MAX_PIXELS,
              max_bytes: int = MAX_FILE_BYTES) -> Pair:
    """Load a co-registered MRI / PET pair (paths or file bytes) as a ``Pair``.

    ``a, b = load_pair(...)`` gives two float32 H x W arrays in [0, 1] as before; a colour
    PET's chroma and luminance range are in ``pet_chroma`` and ``pet_range``.

    Raises:
        InvalidInput: a file is missing, damaged, not an image, empty, constant,
            non-finite, too large, or the two differ in size.
    """
    if names is None:
        names = tuple(label if isinstance(p, (bytes, bytearray)) else Path(p).name
                      for p, label in ((path_a, "first image"), (path_b, "second image")))
    a, name_a = read_source(path_a, names[0], max_pixels, max_bytes)
    b, name_b = read_source(path_b, names[1], max_pixels, max_bytes)
    return check_colour_pair(a, b, names=(name_a, name_b), max_pixels=max_pixels)
