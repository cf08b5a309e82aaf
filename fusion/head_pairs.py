"""Whole-head MRI + colour PET/SPECT slice pairs, simulated from ``fusion.heads``.

One pair: a slice of a simulated head (``fusion.heads.head``) seen as

- MRI: spin-echo T1, T2 or PD contrast from the tissue table (``fusion.tracers.RELAXATION``),
  grey/white/CSF mixed by the template's probabilities, the template's own texture inside
  the brain on T1, a smooth multiplicative bias field, Rician noise, 8-bit grey;
- PET or SPECT: a tracer's uptake (FDG, amyloid, DaT, perfusion), 3-D Gaussian resolution
  (PET 4-6 mm FWHM, SPECT 8-12 mm), Poisson counting noise, a display window, a colour map
  (hot, jet, rainbow or grey) to 8-bit RGB, and back to its luminance Y: what a network
  gets from ``fusion.load_pair`` on a colour PET file.

Both images share one view: the slice centred on the head, radiological orientation
(anterior or superior up, as ``fusion.data.simulate_pair``), a 250 mm field of view,
optionally zoomed, rotated and shifted. ``draw_head_pair`` draws every choice at random for
training; ``render_head_pair`` renders given ``Settings`` (noise-free by default).
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np
from scipy import ndimage as ndi

from . import heads as H
from . import tracers as T
from .data import AXES, unit_scale
from .ycbcr import luminance

FIELD_OF_VIEW_MM = 250.0


@dataclass(frozen=True)
class Settings:
    """How a pair is imaged. The defaults give noise-free, unjittered images."""
    contrast: str = "T1"                # T1, T2 or PD
    tr_ms: float | None = None          # None: mid-range for the contrast
    te_ms: float | None = None
    tracer: str = "fdg"                 # fdg, amyloid, dat, perfusion
    colour_map: str = "hot"             # hot, jet, rainbow, grey
    amyloid_positive: bool = False
    putamen_loss: float = 0.0           # DaT: fraction of putamen binding lost
    fwhm_mm: float | None = None        # None: mid-range for the modality
    counts: float | None = None         # expected counts at peak; None: no Poisson noise
    mri_noise: float = 0.0              # Rician noise sigma, relative to the brightest tissue
    bias: float = 0.0                   # std of the log bias field
    texture: float = 0.0                # amplitude of fine multiplicative tissue texture
    jitter_tables: bool = False         # scale every table entry by 0.85-1.15 (MRI +-8 %)
    window: float = 1.0                 # PET display maximum as a fraction of the peak (< 1 saturates)
    zoom: float = 1.0
    rotation_deg: float = 0.0
    shift_mm: tuple[float, float] = (0.0, 0.0)
    quantise: bool = True               # 8-bit images, as read from a PNG


@dataclass(frozen=True)
class HeadPair:
    """``mri``, ``pet``: (H, W) float32 in [0, 1] as the networks see them (``pet`` is the colour
    PET's luminance, min-max scaled); ``pet_rgb`` (H, W, 3) the colour PET; ``labels`` (H, W) uint8."""
    mri: np.ndarray
    pet: np.ndarray
    pet_rgb: np.ndarray
    labels: np.ndarray
    head_id: int
    axis: str
    index: int
    settings: Settings = field(default_factory=Settings)


def random_settings(rng: np.random.Generator) -> Settings:
    """Every imaging choice drawn at random (contrast, tracer, colour map, noise, bias, view)."""
    contrast = str(rng.choice(["T1", "T2", "PD"], p=[0.4, 0.4, 0.2]))
    (tr_lo, tr_hi), (te_lo, te_hi) = T.SEQUENCES[contrast]
    tracer = str(rng.choice(["fdg", "amyloid", "dat", "perfusion"], p=[0.4, 0.15, 0.15, 0.3]))
    modality = T.TRACERS[tracer]["modality"]
    maps = ["hot", "rainbow", "jet", "grey"]
    colour_map = str(rng.choice(maps, p=[0.45, 0.2, 0.15, 0.2] if modality == "PET" else [0.25, 0.4, 0.15, 0.2]))
    ranges = T.MODALITIES[modality]
    return Settings(
        contrast=contrast, tr_ms=float(rng.uniform(tr_lo, tr_hi)), te_ms=float(rng.uniform(te_lo, te_hi)),
        tracer=tracer, colour_map=colour_map, amyloid_positive=bool(rng.random() < 0.5),
        putamen_loss=float(rng.choice([0.0, rng.uniform(0.2, 0.8)])),
        fwhm_mm=float(rng.uniform(*ranges["fwhm"])), counts=float(rng.uniform(*ranges["counts"])),
        mri_noise=float(rng.uniform(0.005, 0.04)), bias=float(rng.uniform(0.03, 0.2)),
        texture=float(rng.uniform(0.0, 0.05)), jitter_tables=True, window=float(rng.uniform(0.85, 1.0)),
        zoom=float(rng.uniform(0.9, 1.15)), rotation_deg=float(rng.normal(0.0, 5.0)),
        shift_mm=(float(rng.normal(0.0, 6.0)), float(rng.normal(0.0, 6.0))))


# -------------------------------------------------------------------- slices
#: Slices a pair is drawn from cover at least this fraction of the head's largest cross-section: axial
#: slices from below the skull base to the skull cap; coronal and sagittal ones through the brain.
MIN_SLICE_FRACTION = {"axial": 0.1, "coronal": 0.3, "sagittal": 0.35}


def head_slices(hd: H.Head, axis: str, min_fraction: float | None = None) -> list[int]:
    """Template slice indices along ``axis`` where the head covers at least ``min_fraction`` of its
    largest cross-section (default ``MIN_SLICE_FRACTION[axis]``)."""
    a = AXES[axis]
    min_fraction = MIN_SLICE_FRACTION[axis] if min_fraction is None else min_fraction
    area, grid = hd.tissue_area[a], hd.grid
    keep = np.flatnonzero(area >= min_fraction * area.max())
    return [int(round(grid.coordinate(a, n) - H.TEMPLATE_ORIGIN_MM[a])) for n in keep]


def take(volume: np.ndarray, axis: int, index) -> np.ndarray:
    return np.take(volume, index, axis=axis)


def view_transform(image: np.ndarray, centre: tuple[float, float], voxel_mm: float, size: int,
                   settings: Settings, order: int) -> np.ndarray:
    """Resample a slice (first axis: image columns, second: rows from the bottom) to a size x size view."""
    theta = np.deg2rad(settings.rotation_deg)
    s = FIELD_OF_VIEW_MM / settings.zoom / size / voxel_mm
    m = (size - 1) / 2.0
    c, n = np.cos(theta), np.sin(theta)
    du, dv = (v / voxel_mm for v in settings.shift_mm)
    matrix = np.array([[-s * n, s * c], [-s * c, -s * n]])
    offset = np.array([centre[0] + du - s * c * m + s * n * m, centre[1] + dv + s * n * m + s * c * m])
    return ndi.affine_transform(image, matrix, offset, output_shape=(size, size), order=order,
                                mode="constant", cval=0.0)


def smooth_field(rng: np.random.Generator, size: int, waves: int = 4) -> np.ndarray:
    """A smooth random (size, size) field of about unit std: a few long planar cosine waves."""
    r, c = np.mgrid[0:size, 0:size] / size
    total = np.zeros((size, size))
    for _ in range(waves):
        k = rng.normal(size=2) * 2.0
        total += np.cos(2 * np.pi * (k[0] * r + k[1] * c) + rng.uniform(0, 2 * np.pi))
    return total * np.sqrt(2.0 / waves)


def quantised(x: np.ndarray, on: bool) -> np.ndarray:
    return (np.round(np.clip(x, 0, 1) * 255) / 255).astype(np.float32) if on else x.astype(np.float32)


# ------------------------------------------------------------------ rendering
def render_mri(hd: H.Head, a: int, k: int, settings: Settings, rng: np.random.Generator) -> np.ndarray:
    """The MRI signal of grid slice ``k`` along axis ``a``, before the view (float)."""
    grid = hd.grid
    labels, gm, wm = (take(v, a, k) for v in (hd.labels, grid.gm, grid.wm))
    table = T.spin_echo(settings.contrast, settings.tr_ms, settings.te_ms)
    if settings.jitter_tables:
        table = table * rng.uniform(0.92, 1.08, size=table.shape)
    image = table[labels]
    inside = np.isin(labels, H.INTRACRANIAL)
    brain = np.clip(gm + wm, 0, 1)
    mixed = gm * table[H.GM] + wm * table[H.WM] + (1 - brain) * table[H.CSF]
    if settings.contrast == "T1":  # the template's own fine texture (it is a T1), about +-5 %
        t1 = take(grid.t1, a, k)
        smooth = ndi.gaussian_filter(t1, 1.5 / grid.voxel_mm)
        relative = np.where(smooth > 0.3, t1 / np.maximum(smooth, 1e-3) - 1, 0.0)
        mixed = mixed * (1 + np.clip(0.8 * relative, -0.15, 0.15))
    return np.where(inside, mixed, image)


def render_pet(hd: H.Head, a: int, k: int, settings: Settings, rng: np.random.Generator) -> np.ndarray:
    """Noise-free tracer image of grid slice ``k`` along axis ``a`` at the modality's resolution."""
    grid = hd.grid
    modality = T.MODALITIES[T.TRACERS[settings.tracer]["modality"]]
    fwhm = settings.fwhm_mm or float(np.mean(modality["fwhm"]))
    sigma = fwhm * T.FWHM_TO_SIGMA / grid.voxel_mm
    half = int(np.ceil(3 * sigma))
    stride = max(1, int(sigma // 2))  # through-plane samples at most sigma / 2 apart
    lo, hi = k - (k - max(0, k - half)) // stride * stride, min(grid.shape[a], k + half + 1)
    box = [slice(None)] * 3
    box[a] = slice(lo, hi, stride)
    box = tuple(box)
    x, y, z = H.mm_grids(grid, box)
    concentration = T.uptake(settings.tracer, hd.labels[box], grid.gm[box], grid.wm[box], x, y, z,
                             rng if settings.jitter_tables else None, settings.amyloid_positive,
                             settings.putamen_loss)
    weights = np.exp(-0.5 * ((np.arange(lo, hi, stride) - k) / sigma) ** 2)
    slab = np.tensordot(weights / weights.sum(), np.moveaxis(concentration, a, 0), axes=1)
    return ndi.gaussian_filter(slab, sigma)


def render_head_pair(head_id: int, axis: str, index: int, settings: Settings | None = None,
                     rng: np.random.Generator | None = None, size: int = 256, voxel_mm: int = 1) -> HeadPair:
    """The pair at template slice ``index`` (1 mm template grid; may be below it) along ``axis``."""
    settings = settings or Settings()
    rng = rng if rng is not None else np.random.default_rng(0)
    if axis not in AXES:
        raise ValueError(f"axis must be one of {sorted(AXES)}, got {axis!r}")
    hd = H.head(head_id, voxel_mm)
    grid, a = hd.grid, AXES[axis]
    k = grid.index_of(a, index)
    if not 0 <= k < grid.shape[a]:
        raise ValueError(f"{axis} slice {index} is outside the simulated head's grid")
    labels = take(hd.labels, a, k)
    tissue = np.argwhere(labels != H.AIR)
    centre = tuple(tissue.mean(axis=0)) if len(tissue) else tuple((n - 1) / 2 for n in labels.shape)
    view = lambda img, order=1: view_transform(img, centre, grid.voxel_mm, size, settings, order)  # noqa: E731

    mri = np.maximum(view(render_mri(hd, a, k, settings, rng)), 0.0)
    pet = np.maximum(view(render_pet(hd, a, k, settings, rng)), 0.0)
    label_view = view(labels, 0).astype(np.uint8)

    if settings.texture > 0:
        grain = ndi.gaussian_filter(rng.normal(size=mri.shape), 1.2)
        mri = mri * (1 + settings.texture * grain / max(float(grain.std()), 1e-6))
    if settings.bias > 0:
        mri = mri * np.exp(settings.bias * smooth_field(rng, size))
    if settings.mri_noise > 0:
        sigma = settings.mri_noise * float(mri.max())
        mri = np.hypot(mri + rng.normal(0, sigma, mri.shape), rng.normal(0, sigma, mri.shape))
    mri = quantised(mri / max(float(np.percentile(mri, 99.7)), 1e-6), settings.quantise)

    peak = max(float(pet.max()), 1e-9)
    if settings.counts:
        pet = rng.poisson(pet / peak * settings.counts) / settings.counts
        pet = ndi.gaussian_filter(pet, 0.8)
        peak = max(float(pet.max()), 1e-9)
    rgb = quantised(T.apply_colour_map(pet / (peak * settings.window), settings.colour_map), settings.quantise)
    return HeadPair(unit_scale(mri), unit_scale(luminance(rgb)), rgb, label_view, int(head_id), axis,
                    int(index), settings)


def choose_slice(rng: np.random.Generator, head_ids: list[int], excluded: dict[str, list[int]] | None = None,
                 margin: int = 4, voxel_mm: int = 1) -> tuple[int, str, int]:
    """(head id, axis, template slice index) at random: a head from ``head_ids``, axial 60 %, coronal
    and sagittal 20 % each, a slice of ``head_slices`` not within ``margin`` of ``excluded[axis]``
    (and not the midline fissure)."""
    head_id = int(head_ids[rng.integers(len(head_ids))])
    axis = str(rng.choice(["axial", "coronal", "sagittal"], p=[0.6, 0.2, 0.2]))
    banned = (excluded or {}).get(axis, [])
    slices = [i for i in head_slices(H.head(head_id, voxel_mm), axis)
              if all(abs(i - j) > margin for j in banned)
              and not (axis == "sagittal" and abs(i + H.TEMPLATE_ORIGIN_MM[0]) < 4)]
    return head_id, axis, int(slices[rng.integers(len(slices))])


def draw_head_pair(rng: np.random.Generator, head_ids: list[int], excluded: dict[str, list[int]] | None = None,
                   margin: int = 4, size: int = 256, voxel_mm: int = 1) -> HeadPair:
    """A random pair: ``choose_slice`` imaged with ``random_settings``."""
    head_id, axis, index = choose_slice(rng, head_ids, excluded, margin, voxel_mm)
    return render_head_pair(head_id, axis, index, random_settings(rng), rng, size, voxel_mm)


def held_out_settings() -> list[Settings]:
    """Fixed, realistic settings for the held-out evaluation, one per contrast and tracer mix."""
    base = Settings(counts=120.0, mri_noise=0.015, bias=0.1, texture=0.02)
    return [replace(base, contrast="T2", tracer="fdg", colour_map="hot"),
            replace(base, contrast="T1", tracer="perfusion", colour_map="rainbow", counts=40.0, fwhm_mm=10.0),
            replace(base, contrast="PD", tracer="fdg", colour_map="jet"),
            replace(base, contrast="T1", tracer="amyloid", colour_map="hot", amyloid_positive=True),
            replace(base, contrast="T2", tracer="dat", colour_map="rainbow", counts=30.0, fwhm_mm=10.0)]


_REALISTIC = Settings(mri_noise=0.015, bias=0.1, texture=0.02)
#: The bundled head samples (``fusion/sample_data/head-AXIS-NNN_*.png``, ``scripts/make_samples.py --heads``):
#: (head id, axis, template slice, settings), held-out heads, one contrast and tracer each.
BUNDLED_SAMPLES = [
    (1, "axial", 90, replace(_REALISTIC, contrast="T2", tracer="fdg", colour_map="hot", counts=120.0, fwhm_mm=5.0)),
    (2, "axial", 40, replace(_REALISTIC, contrast="T1", tracer="perfusion", colour_map="rainbow", counts=40.0,
                             fwhm_mm=10.0)),
    (3, "axial", 75, replace(_REALISTIC, contrast="PD", tracer="dat", colour_map="rainbow", counts=30.0,
                             fwhm_mm=10.0)),
]
