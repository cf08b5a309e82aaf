"""Sample data: co-registered MRI / simulated FDG-PET pairs.

The bundled pairs (``fusion/sample_data``) are small PNGs made by
``scripts/make_samples.py``; the app and tests need nothing else. Training
pairs are simulated on the fly from the MNI ICBM152 2009 template and its
tissue maps, which ship inside the nilearn wheel (read with nibabel; nilearn
itself is never imported): uptake 4 x grey matter + 1 x white matter (CSF 0),
3-D Gaussian blur of 7 mm FWHM, Poisson counting noise, light smoothing.
"""
from __future__ import annotations

import functools
import importlib.util
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .io import Pair, load_pair

SAMPLE_DIR = Path(__file__).resolve().parent / "sample_data"
AXES = {"sagittal": 0, "coronal": 1, "axial": 2}
PET_FWHM_MM = 7.0
_FWHM_TO_SIGMA = 1.0 / (2.0 * np.sqrt(2.0 * np.log(2.0)))


# ---------------------------------------------------------------- bundled pairs
def list_samples() -> list[str]:
    """Names of the bundled sample pairs, e.g. ``"axial-090"``."""
    return sorted(p.name[: -len("_mri.png")] for p in SAMPLE_DIR.glob("*_mri.png"))


def sample_paths(name: str) -> tuple[Path, Path]:
    """The MRI and PET files of a bundled sample pair.

    ``name`` must be exactly one of ``list_samples()``; anything else (another path,
    ``../x``, a non-string) raises KeyError before any path is built from it.
    """
    samples = list_samples()
    if not isinstance(name, str) or name not in samples:
        shown = repr(name[:40] + "..." if len(name) > 40 else name) if isinstance(name, str) else type(name).__name__
        raise KeyError(f"unknown sample pair {shown}; bundled pairs: {', '.join(samples)}")
    return SAMPLE_DIR / f"{name}_mri.png", SAMPLE_DIR / f"{name}_pet.png"


def load_sample(name: str) -> Pair:
    """A bundled pair (``fusion.io.Pair``): unpacks as two float32 H x W arrays in [0, 1]; a colour PET keeps
    its chroma."""
    return load_pair(*sample_paths(name))


def load_samples() -> list[tuple[str, np.ndarray, np.ndarray]]:
    return [(name, *load_sample(name)) for name in list_samples()]


# ----------------------------------------------------------- MNI-based simulator
def nilearn_data_dir() -> Path:
    spec = importlib.util.find_spec("nilearn")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("simulating MRI/PET pairs needs the MNI152 template that ships in the "
                          "nilearn wheel: pip install -r requirements-dev.txt (or pip install nilearn)")
    return Path(next(iter(spec.submodule_search_locations))) / "datasets" / "data"


@dataclass(frozen=True)
class Volumes:
    """The template on a 1 mm grid, (X, Y, Z) = (sagittal, coronal, axial)."""
    t1: np.ndarray       # T1 intensity, float32
    pet: np.ndarray      # noise-free simulated FDG uptake, blurred, float32
    brain: np.ndarray    # bool mask: grey + white matter probability > 0.5


@functools.lru_cache(maxsize=1)
def mni_volumes() -> Volumes:
    """Load the template and simulate noise-free PET once per process."""
    import nibabel as nib
    from scipy.ndimage import gaussian_filter

    root = nilearn_data_dir()

    def read(kind: str) -> np.ndarray:
        path = root / f"mni_icbm152_{kind}_tal_nlin_sym_09a_converted.nii.gz"
        return np.asarray(nib.load(str(path)).dataobj, dtype=np.float32)

    t1, gm, wm = read("t1"), read("gm"), read("wm")
    uptake = 4.0 * gm + 1.0 * wm  # FDG: grey matter about 4x white matter, CSF none
    pet = gaussian_filter(uptake, PET_FWHM_MM * _FWHM_TO_SIGMA).astype(np.float32)
    return Volumes(t1=t1, pet=pet, brain=(gm + wm) > 0.5)


def to_square(image: np.ndarray, size: int) -> np.ndarray:
    """Pad to a square (zeros, centred), rotate to radiological display, resize."""
    from PIL import Image

    h, w = image.shape
    side = max(h, w)
    square = np.zeros((side, side), np.float32)
    top, left = (side - h) // 2, (side - w) // 2
    square[top:top + h, left:left + w] = image
    square = np.rot90(square)  # put anterior/superior up
    resized = Image.fromarray(np.ascontiguousarray(square), mode="F").resize((size, size), Image.BILINEAR)
    return np.asarray(resized, dtype=np.float32)


def simulate_pair(axis: str, index: int, rng: np.random.Generator, size: int = 256,
                  counts: float = 60.0) -> tuple[np.ndarray, np.ndarray]:
    """One co-registered (MRI, PET) slice pair, each float32 size x size in [0, 1].

    ``counts`` is the expected number of counts at peak uptake: lower means
    noisier PET. Every call draws fresh Poisson noise from ``rng``.
    """
    from scipy.ndimage import gaussian_filter

    vol = mni_volumes()
    take = [slice(None)] * 3
    take[AXES[axis]] = index
    mri = to_square(vol.t1[tuple(take)], size)
    pet_clean = to_square(vol.pet[tuple(take)], size)
    peak = max(float(pet_clean.max()), 1e-6)
    noisy = rng.poisson(np.clip(pet_clean, 0, None) / peak * counts) / counts
    pet = gaussian_filter(noisy.astype(np.float32), 0.8)
    return unit_scale(mri), unit_scale(pet)


def unit_scale(x: np.ndarray) -> np.ndarray:
    lo, hi = float(x.min()), float(x.max())
    return ((x - lo) / max(hi - lo, 1e-12)).astype(np.float32)


def brain_slices(axis: str, min_fraction: float = 0.12) -> list[int]:
    """Slice indices along ``axis`` whose brain mask covers a useful area."""
    brain = mni_volumes().brain
    other = tuple(i for i in range(3) if i != AXES[axis])
    area = brain.sum(axis=other) / (brain.shape[other[0]] * brain.shape[other[1]])
    return [int(i) for i in np.flatnonzero(area >= min_fraction)]


def sample_slice_indices() -> dict[str, list[int]]:
    """The template slices bundled as sample pairs (held out from training): brain-only pairs
    named ``AXIS-NNN`` and simulated head pairs named ``head-AXIS-NNN`` alike."""
    out: dict[str, list[int]] = {axis: [] for axis in AXES}
    for name in list_samples():
        axis, index = name.removeprefix("head-").rsplit("-", 1)
        if axis in AXES and index.isdigit():
            out[axis].append(int(index))
    return out


def training_slices(margin: int = 4) -> list[tuple[str, int]]:
    """All useful slices, minus those within ``margin`` of a bundled sample pair."""
    held_out = sample_slice_indices()
    return [(axis, i) for axis in AXES for i in brain_slices(axis)
            if all(abs(i - j) > margin for j in held_out.get(axis, []))]
