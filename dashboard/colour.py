"""Colour mapping of float maps to PNG data URIs, on the server.

Every map is coloured by one ``ColourSpec``: a Plotly colour scale, how values
map onto it and a gamma. The same spec colours the image and its colour bar,
so the bar always tells the truth about the picture.

Modes:
    "signed"     diverging scale, value 0 at the scale's centre, range [-L, L];
                 t = 0.5 + 0.5 * sign(x) * (|x| / L) ** gamma
    "magnitude"  sequential scale over [0, L] of |x|; t = (|x| / L) ** gamma
    "linear"     sequential scale over [lo, hi]; t = ((x - lo) / (hi - lo)) ** gamma

Gamma only re-colours: it never touches the data, and 0 stays at the centre.
NaN (unknown, e.g. a dense job still refining) is drawn transparent.
"""
from __future__ import annotations

import base64
import functools
import struct
import zlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace

import numpy as np
import plotly.colors as pc

#: Signed derivatives: blue negative, white zero, red positive.
DIVERGING = "RdBu_r"
#: Magnitudes and other non-negative quantities.
SEQUENTIAL = "Viridis"
#: Images (inputs, fused output).
GREY = "gray"
#: MRI share of influence: PET-dominated orange (0), balanced white (0.5), MRI-dominated purple (1).
SHARE = "PuOr"
#: Odd, so that t = 0.5 hits one entry exactly: the scale's centre colour.
LUT_SIZE = 511

MODES = ("signed", "magnitude", "linear")


@dataclass(frozen=True)
class ColourSpec:
    """How one map is coloured: scale, mode, value range, gamma and the unit shown on its bar."""
    scale: str
    mode: str
    lo: float
    hi: float
    gamma: float = 1.0
    unit: str = ""

    def __post_init__(self):
        if self.mode not in MODES:
            raise ValueError(f"unknown colour mode {self.mode!r}; expected one of {MODES}")
        if not self.gamma > 0:
            raise ValueError(f"gamma must be positive, got {self.gamma}")


@functools.lru_cache(maxsize=32)
def lut(scale: str, size: int = LUT_SIZE) -> np.ndarray:
    """The Plotly colour scale ``scale`` sampled at ``size`` evenly spaced points, (size, 3) uint8."""
    colours = pc.sample_colorscale(pc.get_colorscale(scale), list(np.linspace(0.0, 1.0, size)))
    rgb = [pc.unlabel_rgb(c) if c.startswith("rgb") else pc.hex_to_rgb(c) for c in colours]
    return np.clip(np.rint(np.asarray(rgb, dtype=np.float64)), 0, 255).astype(np.uint8)


@functools.lru_cache(maxsize=32)
def _rgba_lut(scale: str) -> np.ndarray:
    """``lut(scale)`` with an alpha column (opaque), and one more row for unknown values: transparent."""
    table = lut(scale)
    rgba = np.full((len(table) + 1, 4), 255, np.uint8)
    rgba[:-1, :3] = table
    rgba[-1, :3], rgba[-1, 3] = table[len(table) // 2], 0
    rgba.flags.writeable = False
    return rgba


def _finite_abs_max(arrays: Iterable[np.ndarray]) -> float:
    peak = 0.0
    for array in arrays:
        array = np.asarray(array)
        if array.size and np.isfinite(array).any():
            peak = max(peak, float(np.nanmax(np.abs(array))))
    return peak


def symmetric_limit(arrays: Iterable[np.ndarray]) -> float:
    """max |x| over all finite entries of ``arrays``; 1.0 when everything is zero or unknown."""
    peak = _finite_abs_max(arrays)
    return peak if peak > 0 else 1.0


def finite_range(arrays: Iterable[np.ndarray]) -> tuple[float, float]:
    """(min, max) over all finite entries; a degenerate range is widened to avoid 0/0."""
    lo, hi = np.inf, -np.inf
    for array in arrays:
        array = np.asarray(array)
        if array.size and np.isfinite(array).any():
            lo, hi = min(lo, float(np.nanmin(array))), max(hi, float(np.nanmax(array)))
    if not np.isfinite(lo):
        return 0.0, 1.0
    if hi <= lo:
        return lo - 0.5, hi + 0.5
    return lo, hi


def limits(maps: Mapping[str, np.ndarray], mode: str, shared: bool) -> dict[str, tuple[float, float]]:
    """The value range of every map: each its own, or one range shared by all (a fair comparison).

    For "signed" the range is symmetric, [-L, L]; for "magnitude" it is [0, L].
    """
    def one(arrays):
        if mode == "linear":
            return finite_range(arrays)
        peak = symmetric_limit(arrays)
        return (-peak, peak) if mode == "signed" else (0.0, peak)

    if shared:
        common = one(list(maps.values()))
        return {key: common for key in maps}
    return {key: one([value]) for key, value in maps.items()}


def normalise(values: np.ndarray, spec: ColourSpec) -> np.ndarray:
    """Map values to positions t in [0, 1] on the colour scale (NaN stays NaN)."""
    x = np.asarray(values, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        if spec.mode == "signed":
            peak = max(abs(spec.lo), abs(spec.hi)) or 1.0
            r = np.clip(np.abs(x) / peak, 0.0, 1.0) ** spec.gamma
            return 0.5 + 0.5 * np.sign(x) * r
        if spec.mode == "magnitude":
            peak = spec.hi if spec.hi > 0 else 1.0
            return np.clip(np.abs(x) / peak, 0.0, 1.0) ** spec.gamma
        span = (spec.hi - spec.lo) or 1.0
        return np.clip((x - spec.lo) / span, 0.0, 1.0) ** spec.gamma


def colourise(values: np.ndarray, spec: ColourSpec) -> np.ndarray:
    """H x W floats -> H x W x 4 uint8 RGBA (NaN transparent)."""
    table = _rgba_lut(spec.scale)
    position = np.rint(normalise(values, spec) * (len(table) - 2))
    index = np.where(np.isfinite(position), position, len(table) - 1).astype(np.intp)
    return table[index]


#: PNG files start with this; then chunks: length, type, data, CRC-32 of type and data.
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PNG_COLOUR_TYPES = {1: 0, 3: 2, 4: 6}  # channels -> grey, RGB, RGBA


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(data, zlib.crc32(kind)))


def png_bytes(pixels: np.ndarray) -> bytes:
    """Encode H x W (grey), H x W x 3 (RGB) or H x W x 4 (RGBA) uint8 as PNG, favouring speed.

    Written directly with zlib (level 1): a hover sends ten small images, and an image library's
    per-call overhead cost several times the compression itself. Rows are unfiltered in small
    images and "Up"-filtered (each byte minus the one above) in larger ones, which compress better.
    """
    pixels = np.asarray(pixels, dtype=np.uint8)
    if pixels.ndim == 3 and pixels.shape[2] == 4 and pixels[..., 3].min() == 255:
        pixels = pixels[..., :3]  # opaque: a smaller RGB file
    channels = 1 if pixels.ndim == 2 else pixels.shape[2]
    if pixels.ndim not in (2, 3) or channels not in _PNG_COLOUR_TYPES or 0 in pixels.shape[:2]:
        raise ValueError(f"cannot encode an array of shape {pixels.shape} as PNG")
    height, width = pixels.shape[:2]
    flat = pixels.reshape(height, width * channels)
    rows = np.empty((height, 1 + width * channels), np.uint8)  # each row: filter type, then its bytes
    if flat.size > 4096:
        rows[:, 0] = 2
        rows[0, 1:] = flat[0]
        np.subtract(flat[1:], flat[:-1], out=rows[1:, 1:])  # uint8: modulo 256, as PNG wants
    else:
        rows[:, 0] = 0
        rows[:, 1:] = flat
    header = struct.pack(">IIBBBBB", width, height, 8, _PNG_COLOUR_TYPES[channels], 0, 0, 0)
    return (_PNG_SIGNATURE + _png_chunk(b"IHDR", header) + _png_chunk(b"IDAT", zlib.compress(rows.tobytes(), 1))
            + _png_chunk(b"IEND", b""))


def data_uri(pixels: np.ndarray) -> str:
    """PNG data URI of a uint8 image, ready for ``html.Img(src=...)``."""
    return "data:image/png;base64," + base64.b64encode(png_bytes(pixels)).decode("ascii")


def image_pixels(image: np.ndarray) -> np.ndarray:
    """An image on [0, 1], (H, W) grey or (H, W, 3) RGB, as uint8 (clipped, rounded), as the command line saves it."""
    image = np.asarray(image, dtype=np.float32)  # float32 throughout, as ``python -m fusion fuse``: same bytes
    if image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[2] != 3):
        raise ValueError(f"expected an (H, W) or (H, W, 3) image, got shape {image.shape}")
    return np.rint(np.clip(np.nan_to_num(image, nan=0.0), 0.0, 1.0) * 255).astype(np.uint8)


def image_uri(image: np.ndarray) -> str:
    """PNG data URI of an (H, W) grey or (H, W, 3) RGB image on [0, 1], shown as it is (no rescaling)."""
    return data_uri(image_pixels(image))


def map_uri(values: np.ndarray, spec: ColourSpec) -> str:
    """Colour a float map and return its PNG data URI."""
    return data_uri(colourise(values, spec))


def colourbar_values(spec: ColourSpec, n: int = 256) -> np.ndarray:
    """The values drawn along a colour bar, left to right, evenly spaced over the range."""
    return np.linspace(spec.lo, spec.hi, n)


def colourbar_uri(spec: ColourSpec, n: int = 256) -> str:
    """A 1-pixel-high colour bar image coloured exactly like the maps of ``spec``."""
    return map_uri(colourbar_values(spec, n)[None, :], spec)


def ticks(spec: ColourSpec) -> list[tuple[float, str]]:
    """Labelled ticks as (position in [0, 1] along the bar, text): ends, and zero when signed."""
    values = [spec.lo, 0.0, spec.hi] if spec.mode == "signed" else [spec.lo, spec.hi]
    span = (spec.hi - spec.lo) or 1.0
    return [((v - spec.lo) / span, format_value(v)) for v in values]


def format_value(value: float) -> str:
    """Compact number for colour bars and readouts: 3 significant digits."""
    if value is None or not np.isfinite(value):
        return "n/a"
    if value == 0:
        return "0"
    return f"{value:.3g}"


def rgb_composite(g_mri: np.ndarray, g_pet: np.ndarray, fused: np.ndarray, gamma: float = 1.0) -> np.ndarray:
    """Guidance RGB image of the reference: R = G_MRI, G = G_PET, B = fused, each min-max scaled.

    ``gamma`` re-colours the two guidance channels only. NaN (unknown) becomes transparent.
    """
    def scaled(x, g):
        lo, hi = finite_range([x])
        t = np.clip((np.asarray(x, np.float64) - lo) / (hi - lo), 0.0, 1.0) ** g
        return np.rint(np.nan_to_num(t, nan=0.0) * 255).astype(np.uint8)

    known = np.isfinite(g_mri) & np.isfinite(g_pet)
    rgba = np.stack([scaled(g_mri, gamma), scaled(g_pet, gamma), scaled(fused, 1.0),
                     np.where(known, 255, 0).astype(np.uint8)], axis=-1)
    return rgba


def with_range(spec: ColourSpec, lo_hi: tuple[float, float]) -> ColourSpec:
    """The same colouring over another value range."""
    return replace(spec, lo=float(lo_hi[0]), hi=float(lo_hi[1]))
