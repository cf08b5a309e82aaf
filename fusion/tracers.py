"""Tissue tables for simulated head images: MRI relaxation, PET/SPECT tracer uptake, colour maps.

Everything here is a small table and a pure function of a tissue label image (see
``fusion.heads`` for the labels); ``fusion.head_pairs`` puts them together.
"""
from __future__ import annotations

import numpy as np

from . import heads as H

# ---------------------------------------------------------------------- MRI
#: (T1 ms, T2 ms, proton density relative to water) per label at 1.5 T. Rounded values of the order
#: reported in the MRI literature (e.g. Bottomley et al., Med. Phys. 1984, for brain and muscle; fat and
#: fatty marrow have short T1; CSF and vitreous are water-like; cortical bone gives almost no signal;
#: fat's T2 is the apparent one of fast spin echo, where fat stays bright). Only the ordering of
#: tissues in each contrast and rough ratios matter for training; exact values vary with field strength.
RELAXATION = {
    H.AIR: (1000.0, 1.0, 0.0), H.SKIN: (800.0, 55.0, 0.80), H.FAT: (260.0, 100.0, 0.90),
    H.MUSCLE: (870.0, 47.0, 0.80), H.OUTER_TABLE: (1000.0, 2.0, 0.05), H.DIPLOE: (370.0, 100.0, 0.85),
    H.INNER_TABLE: (1000.0, 2.0, 0.05), H.CSF: (3500.0, 1000.0, 1.0), H.GM: (1000.0, 100.0, 0.82),
    H.WM: (650.0, 80.0, 0.70), H.VITREOUS: (3800.0, 1000.0, 1.0), H.LENS: (1000.0, 30.0, 0.50),
    H.SINUS: (1000.0, 1.0, 0.0), H.BONE: (1000.0, 2.0, 0.05),
}
#: Spin-echo repetition and echo times (ms), ranges drawn per pair.
SEQUENCES = {"T1": ((400.0, 650.0), (8.0, 20.0)), "T2": ((2500.0, 5000.0), (80.0, 120.0)),
             "PD": ((2000.0, 3500.0), (10.0, 25.0))}


def spin_echo(contrast: str, tr: float | None = None, te: float | None = None) -> np.ndarray:
    """Signal per label, (len(LABEL_NAMES),): PD (1 - exp(-TR/T1)) exp(-TE/T2); TR/TE default to mid-range."""
    if contrast not in SEQUENCES:
        raise ValueError(f"contrast must be one of {sorted(SEQUENCES)}, got {contrast!r}")
    (tr_lo, tr_hi), (te_lo, te_hi) = SEQUENCES[contrast]
    tr = (tr_lo + tr_hi) / 2 if tr is None else tr
    te = (te_lo + te_hi) / 2 if te is None else te
    table = np.zeros(len(H.LABEL_NAMES))
    for label, (t1, t2, pd) in RELAXATION.items():
        table[label] = pd * (1 - np.exp(-tr / t1)) * np.exp(-te / t2)
    return table


# ----------------------------------------------------------------- tracers
#: Relative uptake per label, and multipliers for grey matter in the cerebellum and the striatum.
#: FDG: grey matter about 4 x white matter, low in scalp and resting muscle. Amyloid (florbetapir/PiB
#: like): high non-specific white matter binding; a positive scan adds cortical binding (the
#: cerebellum, the reference region, stays low). DaT SPECT (ioflupane like): specific binding in the
#: caudate and putamen only, everything else non-specific background. Perfusion SPECT (HMPAO/ECD like):
#: grey matter about 2.5 x white matter, cerebellum highest.
_SOFT = {H.SKIN: 0.08, H.FAT: 0.02, H.MUSCLE: 0.10, H.OUTER_TABLE: 0.03, H.DIPLOE: 0.06,
         H.INNER_TABLE: 0.03, H.BONE: 0.03, H.VITREOUS: 0.02, H.LENS: 0.02}
TRACERS = {
    "fdg": {"modality": "PET", "uptake": {**_SOFT, H.CSF: 0.03, H.GM: 1.0, H.WM: 0.25},
            "cerebellum": 0.85, "striatum": 1.1},
    "amyloid": {"modality": "PET", "uptake": {**_SOFT, H.SKIN: 0.10, H.DIPLOE: 0.15, H.CSF: 0.05,
                                               H.GM: 0.40, H.WM: 0.85},
                "cerebellum": 0.9, "striatum": 1.0, "positive_cortex": 0.95},
    "dat": {"modality": "SPECT", "uptake": {**_SOFT, H.SKIN: 0.06, H.CSF: 0.05, H.GM: 0.18, H.WM: 0.16},
            "cerebellum": 1.0, "striatum_absolute": 1.0},
    "perfusion": {"modality": "SPECT", "uptake": {**_SOFT, H.SKIN: 0.12, H.MUSCLE: 0.15, H.CSF: 0.05,
                                                  H.GM: 1.0, H.WM: 0.40},
                  "cerebellum": 1.1, "striatum": 1.05},
}
#: Resolution (FWHM, mm) and expected counts at peak uptake per pixel, ranges drawn per pair.
MODALITIES = {"PET": {"fwhm": (4.0, 6.0), "counts": (60.0, 200.0)},
              "SPECT": {"fwhm": (8.0, 12.0), "counts": (15.0, 60.0)}}
FWHM_TO_SIGMA = 1.0 / (2.0 * np.sqrt(2.0 * np.log(2.0)))


def uptake(tracer: str, labels: np.ndarray, gm: np.ndarray, wm: np.ndarray, x, y, z,
           rng: np.random.Generator | None = None, positive: bool = False, putamen_loss: float = 0.0):
    """Noise-free tracer concentration for a block of labels (any shape), float32.

    Inside the skull, grey/white/CSF mix by the template's probabilities ``gm``, ``wm``;
    ``x, y, z`` are the blocks' mm coordinates (broadcastable). ``rng`` scales every table
    entry by 0.85-1.15; ``positive``: amyloid with cortical binding; ``putamen_loss``: DaT
    binding lost from the putamen (0-1, as in Parkinson's disease).
    """
    if tracer not in TRACERS:
        raise ValueError(f"tracer must be one of {sorted(TRACERS)}, got {tracer!r}")
    spec = TRACERS[tracer]
    jitter = (lambda: 1.0) if rng is None else (lambda: float(rng.uniform(0.85, 1.15)))  # noqa: E731
    table = np.zeros(len(H.LABEL_NAMES), np.float32)
    for label, value in spec["uptake"].items():
        table[label] = value * jitter()
    out = table[labels]
    inside = np.isin(labels, H.INTRACRANIAL)
    brain = np.clip(gm + wm, 0.0, 1.0)
    grey_value = np.full(labels.shape, table[H.GM], np.float32)
    grey_value[np.broadcast_to(H.cerebellum(x, y, z), labels.shape)] *= spec["cerebellum"] * jitter()
    striatum = np.broadcast_to(H.striatum(x, y, z), labels.shape)
    if positive and "positive_cortex" in spec:
        cortex = ~np.broadcast_to(H.cerebellum(x, y, z), labels.shape)
        grey_value[cortex] = spec["positive_cortex"] * jitter()
    if "striatum" in spec:
        grey_value[striatum] *= spec["striatum"] * jitter()
    mixed = gm * grey_value + wm * table[H.WM] + (1 - brain) * table[H.CSF]
    if "striatum_absolute" in spec:  # DaT: the whole nucleus binds, in proportion to its tissue
        specific = spec["striatum_absolute"] * jitter() * brain
        xs, ys, zs = np.broadcast_arrays(x, y, z)
        putamen = striatum & (np.abs(xs) > 20.0)
        specific = np.where(putamen, specific * (1 - putamen_loss), specific)
        mixed = np.where(striatum, np.maximum(mixed, specific), mixed)
    out = np.where(inside, mixed, out)
    return out.astype(np.float32)


# ------------------------------------------------------------- colour maps
#: Piecewise-linear colour maps: (position, R, G, B) rows, positions from 0 to 1.
COLOUR_MAPS = {
    "hot": np.array([(0.0, 0, 0, 0), (0.365, 1, 0, 0), (0.746, 1, 1, 0), (1.0, 1, 1, 1)], float),
    "jet": np.array([(0.0, 0, 0, 0.5), (0.11, 0, 0, 1), (0.125, 0, 0, 1), (0.34, 0, 0.9, 1), (0.35, 0, 1, 1),
                     (0.65, 1, 1, 0), (0.89, 1, 0, 0), (1.0, 0.5, 0, 0)], float),
    # black background, then violet, blue, green, yellow, red, white: the Harvard atlas SPECT look
    "rainbow": np.array([(0.0, 0, 0, 0), (0.12, 0.35, 0, 0.5), (0.3, 0, 0, 1), (0.5, 0, 1, 0),
                         (0.68, 1, 1, 0), (0.85, 1, 0, 0), (1.0, 1, 1, 1)], float),
    "grey": np.array([(0.0, 0, 0, 0), (1.0, 1, 1, 1)], float),
}


def apply_colour_map(values: np.ndarray, name: str) -> np.ndarray:
    """(H, W) values in [0, 1] -> (H, W, 3) float32 RGB in [0, 1] through a piecewise-linear map."""
    if name not in COLOUR_MAPS:
        raise ValueError(f"colour map must be one of {sorted(COLOUR_MAPS)}, got {name!r}")
    table = COLOUR_MAPS[name]
    v = np.clip(values, 0.0, 1.0)
    return np.stack([np.interp(v, table[:, 0], table[:, c]) for c in (1, 2, 3)], axis=-1).astype(np.float32)

