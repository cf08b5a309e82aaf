"""Simulated heads: a skull, scalp, face and neck built around the MNI ICBM152 brain.

The template that ships in the nilearn wheel is skull-stripped (its T1 is zero
outside the brain). ``head(head_id)`` wraps that brain in a procedural head, as a
3-D tissue label volume on the template's grid (1 mm, padded so that the skull base,
face, neck and the thickest scalp fit):

- intracranial space: the brain closed by 6 mm (sulci, fissures, the gaps around
  the cerebellum), plus a CSF layer 1-3 mm thick;
- the skull as three shells by distance from it: inner table, diploe (marrow),
  outer table, 3-9 mm in all, thin over the temporal squama, thick at the occiput;
- scalp: skin and subcutaneous fat by distance from the air, the temporalis
  muscle at the sides, deep soft tissue (muscle) in the face and neck;
- the face: eyes (vitreous and lens) in orbits lined with fat and bone, the
  sinuses (frontal, ethmoid, sphenoid, maxillary, mastoid cells) and the nasal
  cavity and pharynx as air inside bone, the spinal cord in its canal below.

Distance fields are computed on a grid twice as coarse (fast) and interpolated,
so tissue boundaries are smooth. The head id seeds every random choice (layer
thicknesses and their smooth variation over the head, eye position, sinus sizes),
so one id always gives the same head, and different ids give different heads.

Splits: ids in ``VALIDATION_HEADS`` (900-915) are for the training run's validation
loss, ids in ``training_heads()`` (1000 on) are the only ones the training sampler
(``fusion.training_data``, ``--data mni``) draws; every other id (0-899: the bundled samples
use 1-3, ``benchmarks/bench_heads.py`` 10 on) is held out. All heads share the one
template brain, so training also never sees a slice within 4 mm of a bundled
sample's (``fusion.data.sample_slice_indices``) in any head.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi

from .data import nilearn_data_dir

# ------------------------------------------------------------------ labels
AIR, SKIN, FAT, MUSCLE, OUTER_TABLE, DIPLOE, INNER_TABLE, CSF, GM, WM, VITREOUS, LENS, SINUS, BONE = range(14)
LABEL_NAMES = ("air", "skin", "fat", "muscle", "outer table", "diploe", "inner table", "csf", "grey matter",
               "white matter", "vitreous", "lens", "sinus", "bone")
SKULL = (OUTER_TABLE, DIPLOE, INNER_TABLE, BONE)
INTRACRANIAL = (CSF, GM, WM)

# ------------------------------------------------------------------ splits
VALIDATION_HEADS = range(900, 916)
TRAINING_HEAD_BASE = 1000
HEAD_SEED = 20240612

#: Template grid: (X, Y, Z) = (left->right, posterior->anterior, inferior->superior), 1 mm.
TEMPLATE_ORIGIN_MM = (-98.0, -134.0, -72.0)
#: mm added (before, after) each axis of the template so that a whole head fits.
PADDING_MM = ((14, 14), (10, 16), (36, 8))


def training_heads(count: int = 32) -> list[int]:
    """The head ids the training sampler draws from (never a held-out or validation id)."""
    return [TRAINING_HEAD_BASE + k for k in range(count)]


def is_training_head(head_id: int) -> bool:
    return head_id >= TRAINING_HEAD_BASE


# ---------------------------------------------------------------- template
@dataclass(frozen=True)
class Template:
    """The template's T1 and tissue probabilities, padded, on a grid of ``voxel_mm`` (X, Y, Z)."""
    voxel_mm: int
    t1: np.ndarray      # float32 in [0, 1], zero outside the brain
    gm: np.ndarray      # float32 probability
    wm: np.ndarray      # float32 probability
    origin_mm: tuple[float, float, float]  # the mm coordinate of voxel (0, 0, 0)

    @property
    def shape(self) -> tuple[int, int, int]:
        return self.t1.shape

    def coordinate(self, axis: int, index: np.ndarray | int):
        """mm coordinate of grid ``index`` along ``axis``."""
        return self.origin_mm[axis] + np.asarray(index) * self.voxel_mm

    def index_of(self, axis: int, template_index: int) -> int:
        """The grid index of a slice given by its index on the unpadded 1 mm template."""
        mm = TEMPLATE_ORIGIN_MM[axis] + template_index
        return int(round((mm - self.origin_mm[axis]) / self.voxel_mm))


@functools.lru_cache(maxsize=2)
def template(voxel_mm: int = 1) -> Template:
    """The padded template, with the spinal cord continued below the medulla as white matter."""
    import nibabel as nib

    if voxel_mm not in (1, 2):
        raise ValueError("voxel_mm must be 1 or 2")
    root = nilearn_data_dir()

    def read(kind: str) -> np.ndarray:
        path = root / f"mni_icbm152_{kind}_tal_nlin_sym_09a_converted.nii.gz"
        volume = np.asarray(nib.load(str(path)).dataobj, dtype=np.float32) / 255.0
        volume = np.pad(volume, PADDING_MM)
        return np.ascontiguousarray(volume[::voxel_mm, ::voxel_mm, ::voxel_mm])

    t1, gm, wm = read("t1"), read("gm"), read("wm")
    origin = tuple(o - pad[0] for o, pad in zip(TEMPLATE_ORIGIN_MM, PADDING_MM, strict=True))
    grid = Template(voxel_mm, t1, gm, wm, origin)
    # the medulla leaves the template at its bottom: continue it as a cord (radius 5 mm) to the grid's end
    x, y, z = mm_grids(grid)
    bottom = (gm + wm)[..., grid.index_of(2, 2)] > 0.5
    cx, cy = (float(np.broadcast_to(c[..., 0], bottom.shape)[bottom].mean()) for c in (x, y))
    cord = ((x - cx) ** 2 + (y - cy) ** 2 <= 25.0) & (z < -68.0)
    wm[np.broadcast_to(cord, wm.shape)] = 1.0
    return grid


def mm_grids(grid: Template, box: tuple[slice, slice, slice] | None = None):
    """Open (broadcastable) mm coordinate arrays x, y, z of the grid, or of a box of it."""
    box = box or (slice(None),) * 3
    axes = []
    for axis in range(3):
        indices = np.arange(grid.shape[axis])[box[axis]]
        shape = [1, 1, 1]
        shape[axis] = len(indices)
        axes.append(grid.coordinate(axis, indices).astype(np.float32).reshape(shape))
    return tuple(axes)


# ----------------------------------------------------------------- helpers
def upsample2(coarse: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Linear interpolation of a field sampled at every 2nd voxel back to the full ``shape``."""
    out = coarse.astype(np.float32)
    for axis, n in enumerate(shape):
        fine = np.repeat(out, 2, axis=axis)
        lo = np.take(out, np.arange(out.shape[axis] - 1), axis=axis)
        hi = np.take(out, np.arange(1, out.shape[axis]), axis=axis)
        odd = [slice(None)] * out.ndim
        odd[axis] = slice(1, 2 * out.shape[axis] - 2, 2)
        fine[tuple(odd)] = 0.5 * (lo + hi)
        out = np.take(fine, np.arange(n), axis=axis)
    return out


def signed_distance(mask: np.ndarray, spacing: float) -> np.ndarray:
    """mm to the mask's surface: positive outside, negative inside."""
    return (ndi.distance_transform_edt(~mask) - ndi.distance_transform_edt(mask)).astype(np.float32) * spacing


def closing(mask: np.ndarray, radius_mm: float, spacing: float) -> np.ndarray:
    """Morphological closing with a ball, by two distance transforms."""
    grown = ndi.distance_transform_edt(~mask) * spacing <= radius_mm
    return ndi.distance_transform_edt(grown) * spacing > radius_mm


def direction_field(rng: np.random.Generator, nx, ny, nz, terms: int = 6, max_freq: float = 2.5):
    """A smooth random function of the direction (nx, ny, nz) from the head's centre, about unit std."""
    total = 0.0
    for _ in range(terms):
        w = [float(v) for v in rng.normal(size=3) * max_freq / np.sqrt(3)]
        total = total + np.cos(w[0] * nx + w[1] * ny + w[2] * nz + float(rng.uniform(0, 2 * np.pi)))
    return (total * np.sqrt(2.0 / terms)).astype(np.float32)


def face_neighbours(mask: np.ndarray) -> np.ndarray:
    """Voxels outside ``mask`` that share a face with it (6-connectivity)."""
    out = np.zeros_like(mask)
    for axis in range(mask.ndim):
        lo = [slice(None)] * mask.ndim
        hi = [slice(None)] * mask.ndim
        lo[axis], hi[axis] = slice(None, -1), slice(1, None)
        out[tuple(lo)] |= mask[tuple(hi)]
        out[tuple(hi)] |= mask[tuple(lo)]
    return out & ~mask


def ellipsoid(x, y, z, centre, axes) -> np.ndarray:
    """Normalised radius of an axis-aligned ellipsoid: < 1 inside."""
    return np.sqrt(((x - centre[0]) / axes[0]) ** 2 + ((y - centre[1]) / axes[1]) ** 2
                   + ((z - centre[2]) / axes[2]) ** 2)


def bump(value, centre: float, width: float):
    return np.exp(-((value - centre) / width) ** 2)


# -------------------------------------------------------------------- head
@dataclass(frozen=True)
class Head:
    """One simulated head: ``labels`` (X, Y, Z) uint8 on ``grid`` (the template it was built on);
    ``tissue_area[axis]``: the number of non-air voxels in each grid slice along that axis."""
    head_id: int
    grid: Template
    labels: np.ndarray
    eye_centres_mm: tuple[tuple[float, float, float], ...]
    tissue_area: tuple[np.ndarray, np.ndarray, np.ndarray]


def head(head_id: int, voxel_mm: int = 1) -> Head:
    """The head ``head_id`` (any int >= 0), built once per process per voxel size (1 or 2 mm)."""
    if not isinstance(head_id, (int, np.integer)) or isinstance(head_id, bool) or head_id < 0:
        raise ValueError(f"head_id must be an int >= 0, got {head_id!r}")
    return cached_head(int(head_id), int(voxel_mm))


@functools.lru_cache(maxsize=40)   # about 14 MB each at 1 mm
def cached_head(head_id: int, voxel_mm: int) -> Head:
    return build_head(head_id, template(voxel_mm))


def build_head(head_id: int, grid: Template) -> Head:
    rng = np.random.default_rng([HEAD_SEED, head_id])
    step = 2 * grid.voxel_mm                       # the coarse grid of the distance fields
    coarse = (slice(None, None, 2),) * 3
    brain = (grid.gm + grid.wm) > 0.5
    x, y, z = mm_grids(grid, coarse)

    # intracranial space: the brain closed, plus a CSF layer of smoothly varying thickness
    brain_c = ndi.maximum_filter(brain, size=2)[coarse]
    hull = ndi.binary_fill_holes(closing(brain_c, 6.0, step))
    cx, cy, cz = (grid.origin_mm[a] + float(np.nonzero(hull)[a].mean()) * step for a in range(3))
    radius = np.sqrt((x - cx) ** 2 + (y - cy) ** 2 + (z - cz) ** 2) + 1e-3
    nx, ny, nz = (x - cx) / radius, (y - cy) / radius, (z - cz) / radius
    csf = 2.0 + 0.7 * direction_field(rng, nx, ny, nz)
    sd_hull = signed_distance(hull, step)
    intracranial = sd_hull <= np.clip(csf, 1.0, 3.0)
    sd_ic = signed_distance(intracranial, step)

    # skull thickness: thin over the temporal squama, thicker at the occiput
    lateral = np.abs(nx)
    temporal = bump(lateral, 1.0, 0.25) * bump(nz, 0.05, 0.3) * bump(ny, 0.1, 0.5)
    occipital = bump(ny, -1.0, 0.35) * bump(nz, 0.0, 0.35)
    skull = (rng.uniform(5.5, 7.5) * (1 + 0.18 * direction_field(rng, nx, ny, nz))
             * (1 - 0.5 * temporal) + 3.0 * occipital)
    skull = np.clip(skull, 2.5, 11.0)
    inner = rng.uniform(0.18, 0.28) + 0.04 * direction_field(rng, nx, ny, nz)
    outer = rng.uniform(0.22, 0.32) + 0.04 * direction_field(rng, nx, ny, nz)

    # soft tissue over the skull: galea, temporalis muscle at the sides, fat, skin
    skin = rng.uniform(1.6, 2.6) * (1 + 0.12 * direction_field(rng, nx, ny, nz))
    fat = rng.uniform(1.5, 5.5) * np.clip(1 + 0.35 * direction_field(rng, nx, ny, nz), 0.4, 2.0)
    temporalis = rng.uniform(4.0, 9.0) * bump(lateral, 1.0, 0.3) * bump(nz, 0.1, 0.45) * bump(ny, 0.0, 0.6)
    covering = 1.0 + temporalis + fat + skin

    # the eyes: in front of the frontal lobes, at least R + 5 mm from the intracranial space
    eye_radius = rng.uniform(11.0, 12.5)
    eyes = []
    for side in (-1, 1):
        ex, ey, ez = side * rng.uniform(30.0, 34.0), rng.uniform(54.0, 60.0), rng.uniform(-40.0, -35.0)
        for _ in range(40):
            i, j, k = (int(round((c - o) / step)) for c, o in zip((ex, ey, ez), grid.origin_mm, strict=True))
            if sd_ic[i, j, k] >= eye_radius + 5.0:
                break
            ey += 1.0
        eyes.append((ex, ey, ez))

    # the envelope: a shell around the skull, the face, the neck and the nose, closed and smoothed
    face = ellipsoid(x, y, z, (0.0, 28.0, -56.0), (rng.uniform(58, 66), max(e[1] for e in eyes) - 28 + 16, 46.0))
    neck = (((x / rng.uniform(52, 60)) ** 2 + ((y + 18.0) / rng.uniform(55, 62)) ** 2 <= 1.0)
            & (z < -40.0 - 0.4 * np.maximum(y + 18.0, 0.0)))
    nose = ellipsoid(x, y, z, (0.0, max(e[1] for e in eyes) + 14, -58.0), (11.0, 16.0, 22.0))
    envelope = (sd_ic <= skull + covering) | (face <= 1) | neck | (nose <= 1)
    for e in eyes:
        envelope |= ellipsoid(x, y, z, e, (eye_radius + 2.5,) * 3) <= 1
    envelope = closing(envelope, 8.0, step)
    depth = (ndi.distance_transform_edt(envelope).astype(np.float32) - 0.5) * step  # mm from the surface

    # layer coordinates, continuous in space: bone 0-1 inner table, 1-2 diploe, 2-3 outer table;
    # soft tissue from the air 0-1 skin, 1-2 fat, then muscle
    q = sd_ic / skull
    bone = np.where(q <= inner, q / inner, np.where(q <= 1 - outer, 1 + (q - inner) / (1 - outer - inner),
                                                    2 + (q - 1 + outer) / outer))
    soft = np.where(depth <= skin, depth / skin, 1 + (depth - skin) / fat)
    del q, skull, inner, outer, fat
    # to the fine grid by linear interpolation, then labels by thresholds
    shape = grid.shape
    sd_ic, bone, soft = (upsample2(f, shape) for f in (sd_ic, bone, soft))
    labels = np.full(shape, AIR, np.uint8)
    labels[soft > 0] = MUSCLE
    labels[(soft > 0) & (soft <= 2)] = FAT
    labels[(soft > 0) & (soft <= 1)] = SKIN
    in_bone = (sd_ic > 0) & (bone <= 3) & (soft > 1)
    labels[in_bone] = OUTER_TABLE
    labels[in_bone & (bone <= 2)] = DIPLOE
    labels[in_bone & (bone <= 1)] = INNER_TABLE
    del bone, in_bone
    face_parts(labels, grid, rng, eyes, eye_radius, sd_ic, soft)
    ic = sd_ic <= 0
    # the voxels face-adjacent to the intracranial space are bone wherever the layers left a gap
    labels[face_neighbours(ic) & ~np.isin(labels, SKULL)] = INNER_TABLE
    brain_pv = grid.gm + grid.wm
    labels[ic] = CSF
    labels[ic & (brain_pv >= 0.5) & (grid.gm >= grid.wm)] = GM
    labels[ic & (brain_pv >= 0.5) & (grid.gm < grid.wm)] = WM
    tissue = labels != AIR
    area = tuple(tissue.sum(axis=tuple(i for i in range(3) if i != a)) for a in range(3))
    return Head(head_id, grid, labels, tuple(tuple(float(c) for c in e) for e in eyes), area)


def face_parts(labels, grid, rng, eyes, eye_radius, sd_ic, soft) -> None:
    """Eyes in fat-lined bony orbits, and air sinuses in bone, written into ``labels`` in place.

    ``sd_ic``: mm from the intracranial space; ``soft``: the soft-tissue layer coordinate (skin < 1).
    """
    x, y, z = mm_grids(grid)
    deep = (sd_ic > 2.5) & (soft > 1.3)      # beyond the inner table, under the skin

    def region(centre, axes, margin: float = 3.0):
        """(box, normalised radius inside the box) of an ellipsoid, margin in mm for its wall."""
        box = tuple(slice(max(0, int((c - a - margin - o) // grid.voxel_mm)),
                          max(0, int((c + a + margin - o) // grid.voxel_mm) + 2))
                    for c, a, o in zip(centre, axes, grid.origin_mm, strict=True))
        xs, ys, zs = x[box[0]], y[:, box[1]], z[..., box[2]]
        return box, ellipsoid(xs, ys, zs, centre, axes)

    def cavity(centre, axes, fill: int, wall_mm: float = 1.5, keep_front: bool = True):
        box, r = region(centre, axes, wall_mm + 1)
        wall = (r <= 1 + wall_mm / min(axes)) & deep[box]
        if not keep_front:
            wall &= y[:, box[1]] < centre[1] + 0.3 * axes[1]
        current = labels[box]
        current[wall & (current != AIR) & ~np.isin(current, (SINUS, VITREOUS, LENS))] = BONE
        current[(r <= 1) & deep[box]] = fill

    # sinuses and airways (air in bone); sizes vary per head
    s = lambda: rng.uniform(0.8, 1.2)  # noqa: E731
    front = max(e[1] for e in eyes)
    for side in (-1, 1):
        cavity((side * 24.0, front - 22, -64.0), (11 * s(), 15 * s(), 13 * s()), SINUS)       # maxillary
        cavity((side * 47.0, -26.0, -44.0), (7 * s(), 9 * s(), 8 * s()), SINUS)               # mastoid cells
    cavity((0.0, front - 16, -36.0), (8 * s(), 14 * s(), 9 * s()), SINUS)                     # ethmoid
    cavity((0.0, 12.0, -40.0), (10 * s(), 9 * s(), 8 * s()), SINUS)                           # sphenoid
    cavity((0.0, front - 8, -60.0), (7.0, 22 * s(), 14.0), SINUS)                              # nasal cavity
    cavity((0.0, -4.0, -80.0), (11 * s(), 7 * s(), 14.0), SINUS)                               # pharynx
    if rng.random() < 0.9:                                                                     # frontal sinus
        j = grid.index_of(2, 72 + 6)
        column = np.flatnonzero(sd_ic[grid.shape[0] // 2, :, j] <= 0)
        if len(column):
            ty = grid.coordinate(1, column.max()) + 5.0
            box, r = region((0.0, ty, 6.0), (13 * s(), 4.0, 10 * s()), 1.0)
            cur = labels[box]
            cur[(r <= 1) & (cur == DIPLOE) & (sd_ic[box] > 2.5)] = SINUS
    # eyes: orbital fat behind the globe in a bony cone, vitreous, lens at the front
    for e in eyes:
        side = np.sign(e[0])
        orbit = (e[0] - side * 2.0, e[1] - 12.0, e[2] + 1.0)
        cavity(orbit, (13.0, 21.0, 13.0), FAT, wall_mm=2.0, keep_front=False)
        box, r = region(e, (eye_radius,) * 3, 1.0)
        labels[box][r <= 1] = VITREOUS
        box, r = region((e[0], e[1] + eye_radius - 3.5, e[2]), (4.5, 2.0, 4.5), 1.0)
        labels[box][r <= 1] = LENS


# ----------------------------------------------------------------- regions
STRIATUM_MM = (((13.0, 12.0, 9.0), (4.5, 9.0, 8.0)),      # caudate head: centre (|x|, y, z), semi-axes
               ((16.5, -8.0, 19.0), (3.5, 10.0, 4.5)),    # caudate body
               ((25.0, 2.0, 1.0), (5.0, 13.0, 8.0)))      # putamen


def striatum(x, y, z) -> np.ndarray:
    """Caudate and putamen of both sides as ellipsoids at their MNI positions.

    ``x, y, z``: open 3-D mm grids as from ``mm_grids`` (each varies along its own axis only);
    bool out, their broadcast shape. Only the block around the nuclei is evaluated.
    """
    grids = [np.asarray(c) for c in (x, y, z)]
    inside = np.zeros(np.broadcast_shapes(*(c.shape for c in grids)), bool)
    box = []
    for axis, (c, lo, hi) in enumerate(zip(grids, (-31.0, -19.0, -8.0), (31.0, 22.0, 24.5), strict=True)):
        keep = np.flatnonzero((c.reshape(-1) >= lo) & (c.reshape(-1) <= hi))
        if len(keep) == 0:
            return inside
        box.append(slice(keep[0], keep[-1] + 1) if c.shape[axis] > 1 else slice(None))
    sub = [c[tuple(box[a] if d == a else slice(None) for d in range(3))] for a, c in enumerate(grids)]
    block = inside[tuple(box)]
    for side in (-1, 1):
        for centre, axes in STRIATUM_MM:
            block |= ellipsoid(*sub, (side * centre[0], *centre[1:]), axes) <= 1
    return inside


def cerebellum(x, y, z) -> np.ndarray:
    """The posterior fossa below the tentorium, without the brainstem (approximate planes, mm)."""
    return (y < -40.0) & (z < -10.0 - 0.35 * np.abs(x)) & ~((np.abs(x) < 12.0) & (y > -50.0))
