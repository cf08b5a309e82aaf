"""The view state that lives in the URL, so that a link reproduces the view.

    ?pair=sample:axial-095&models=funfusean,masknet&px=128,100&jac=signed
     &range=shared&win=rf&gj=0.5&gg=1&y=1

``y=1`` (only written when on): images show the luminance Y alone, not a colour PET's colours.

``decode`` never raises: a hand-edited or stale link falls back to defaults
for the parts it cannot read, and unknown models are dropped.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, replace
from urllib.parse import parse_qs, urlencode

JAC_MODES = ("signed", "magnitude")
RANGE_MODES = ("per-map", "shared")
WINDOW_MODES = ("rf", "full")
GAMMA_MIN, GAMMA_MAX = 0.1, 2.0


@dataclass(frozen=True)
class ViewState:
    pair: str = ""                       # "sample:<name>" or an uploaded pair's content id
    models: tuple[str, ...] = ()
    pixel: tuple[int, int] | None = None  # the pinned (row, col); None = nothing pinned
    jac: str = "signed"                  # Jacobian colouring: signed (diverging) or magnitude
    range: str = "per-map"               # colour range per map, or shared across models
    window: str = "rf"                   # Jacobian panels: the model's RF window, or full size
    gamma_j: float = 1.0                 # gamma of the Jacobian maps
    gamma_g: float = 1.0                 # gamma of the guidance maps
    y_only: bool = False                 # images: luminance Y alone (a colour PET shown grey)
    extra: dict = field(default_factory=dict, compare=False)

    def to_dict(self) -> dict:
        d = asdict(self)
        d.pop("extra")
        d["models"] = list(self.models)
        d["pixel"] = None if self.pixel is None else list(self.pixel)
        return d


def clamp_gamma(value) -> float:
    """A gamma within the sliders' range [0.1, 2.0], rounded to 2 decimals; 1.0 if unreadable."""
    try:
        g = float(value)
    except (TypeError, ValueError):
        return 1.0
    if not math.isfinite(g):
        return 1.0
    return round(min(max(g, GAMMA_MIN), GAMMA_MAX), 2)


def clamp_pixel(pixel: dict | None, h: int, w: int) -> tuple[int, int]:
    """The selected pixel {row, col} as (row, col) inside an h x w image; the centre when there is none."""
    if not pixel or pixel.get("row") is None:
        return h // 2, w // 2
    return min(max(int(pixel["row"]), 0), h - 1), min(max(int(pixel["col"]), 0), w - 1)


def encode(state: ViewState) -> str:
    """The URL search string (with its leading "?") for ``state``."""
    params = {"pair": state.pair, "models": ",".join(state.models)}
    if state.pixel is not None:
        params["px"] = f"{state.pixel[0]},{state.pixel[1]}"
    params.update(jac=state.jac, range=state.range, win=state.window,
                  gj=f"{clamp_gamma(state.gamma_j):g}", gg=f"{clamp_gamma(state.gamma_g):g}")
    if state.y_only:
        params["y"] = "1"
    return "?" + urlencode(params, safe=",:")


def _choice(value: str | None, allowed: tuple[str, ...], default: str) -> str:
    return value if value in allowed else default


def decode(search: str | None, default: ViewState, known_models: list[str] | None = None) -> ViewState:
    """Read a URL search string; missing or unreadable parts take ``default``'s values."""
    query = parse_qs((search or "").lstrip("?"), keep_blank_values=True)
    get = lambda key: query[key][-1] if key in query else None
    state = default
    if get("pair"):
        state = replace(state, pair=get("pair"))
    models = get("models")
    if models is not None:
        names = [m for m in dict.fromkeys(models.split(",")) if m]
        if known_models is not None:
            names = [m for m in names if m in known_models]
        state = replace(state, models=tuple(names))
    pixel = get("px")
    if pixel is not None:
        try:
            row, col = (int(v) for v in pixel.split(","))
            state = replace(state, pixel=(row, col) if row >= 0 and col >= 0 else None)
        except ValueError:
            state = replace(state, pixel=None)
    return replace(
        state,
        jac=_choice(get("jac"), JAC_MODES, state.jac),
        range=_choice(get("range"), RANGE_MODES, state.range),
        window=_choice(get("win"), WINDOW_MODES, state.window),
        gamma_j=clamp_gamma(get("gj")) if get("gj") is not None else state.gamma_j,
        gamma_g=clamp_gamma(get("gg")) if get("gg") is not None else state.gamma_g,
        y_only={"1": True, "0": False}.get(get("y"), state.y_only),
    )
