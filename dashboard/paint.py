"""Which colouring each kind of map gets, and the coloured payload every view shows.

One function, ``paint``, turns a float map into a ``Painted`` (RGBA pixels, PNG data URI, colour
spec and tick labels); the hover answer (``api.py``), the whole-image maps (``dense_views``) and
the PNG sheet (``features/downloads.py``) all colour through it, so a map looks the same in each.

Kinds of map:
    "derivative"  a Jacobian window or a guidance map: diverging around 0 ("signed") or
                  sequential over |x| ("magnitude"), with the Jacobian gamma or the guidance gamma
    "share"       the MRI share of influence on the fixed range [0, 1]
    "grey"        an image (input, fused Y) on a grey scale, linear
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np

from . import colour
from .state import clamp_gamma

KINDS = ("derivative", "share", "grey")
#: Whole-image views coloured from one map each: view key -> name of the map in a dense result.
DENSE_MAPS = {"gmri": "guidance_a", "gpet": "guidance_b", "share": "mri_share"}


def spec(kind: str, mode: str = "signed", gamma: float = 1.0, lo_hi: tuple[float, float] | None = None
         ) -> colour.ColourSpec:
    """The colouring of a map of ``kind``; ``lo_hi`` None: the nominal range ([-1, 1] signed, else [0, 1]).

    ``mode`` ("signed" or "magnitude") and ``gamma`` matter for "derivative" maps only.
    """
    if kind == "derivative":
        scale = colour.DIVERGING if mode == "signed" else colour.SEQUENTIAL
        base = colour.ColourSpec(scale, mode, -1.0 if mode == "signed" else 0.0, 1.0, clamp_gamma(gamma))
    elif kind == "share":
        return colour.ColourSpec(colour.SHARE, "linear", 0.0, 1.0)
    elif kind == "grey":
        base = colour.ColourSpec(colour.GREY, "linear", 0.0, 1.0)
    else:
        raise ValueError(f"unknown kind of map {kind!r}; expected one of {KINDS}")
    return base if lo_hi is None else colour.with_range(base, lo_hi)


@dataclass(frozen=True)
class Painted:
    """One coloured map: ``pixels`` H x W x 4 uint8 (NaN transparent) and the ``spec`` that coloured it."""

    pixels: np.ndarray
    spec: colour.ColourSpec

    @cached_property
    def uri(self) -> str:
        """The PNG data URI of ``pixels``, for ``html.Img(src=...)``."""
        return colour.data_uri(self.pixels)

    @property
    def ticks(self) -> list[list]:
        """The colour bar's labelled ticks, [[position in [0, 1], text], ...] (JSON-ready)."""
        return [[pos, text] for pos, text in colour.ticks(self.spec)]


def limits_of(values: np.ndarray, kind: str, mode: str = "signed") -> tuple[float, float]:
    """The value range a map of ``kind`` gets on its own (no range shared with other maps)."""
    if kind == "share":
        return 0.0, 1.0
    return colour.limits({0: values}, mode if kind == "derivative" else "linear", False)[0]


def paint(values: np.ndarray, kind: str, mode: str = "signed", gamma: float = 1.0,
          lo_hi: tuple[float, float] | None = None) -> Painted:
    """Colour an H x W float map of ``kind`` over ``lo_hi`` (None: the map's own range, ``limits_of``)."""
    if lo_hi is None:
        lo_hi = limits_of(values, kind, mode)
    how = spec(kind, mode, gamma, lo_hi)
    return Painted(colour.colourise(values, how), how)


def dense_views(maps: dict, fused: np.ndarray, mode: str, gamma: float,
                shared_ranges: dict | None = None) -> dict[str, tuple[str, colour.ColourSpec | None]]:
    """{view: (PNG data URI, colour spec)} of one model's whole-image views from its dense maps.

    ``maps``: "guidance_a", "guidance_b", "mri_share" (H x W, NaN where still unknown);
    ``shared_ranges``: {view: (lo, hi)} when the models share one range. "rgb" has no spec.
    """
    out = {}
    for view, name in DENSE_MAPS.items():
        kind = "share" if view == "share" else "derivative"
        painted = paint(maps[name], kind, mode, gamma, (shared_ranges or {}).get(view))
        out[view] = (painted.uri, painted.spec)
    out["rgb"] = (colour.data_uri(colour.rgb_composite(maps["guidance_a"], maps["guidance_b"], fused,
                                                       clamp_gamma(gamma))), None)
    return out
