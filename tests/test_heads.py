"""Simulated heads: geometry, MRI contrasts, tracer uptake, colour PET, determinism and the held-out split.

Heads are built on the 2 mm grid here (``voxel_mm=2``), which uses exactly the same code as 1 mm.
"""
import numpy as np
import pytest
import torch
from PIL import Image
from scipy import ndimage as ndi

import fusion
from fusion import head_pairs as P
from fusion import heads as H
from fusion import tracers as T
from fusion.data import sample_slice_indices, unit_scale
from fusion.ycbcr import luminance

VOX = 2


@pytest.fixture(scope="module")
def head():
    return H.head(5, VOX)


@pytest.fixture(scope="module")
def mm(head):
    return np.broadcast_arrays(*H.mm_grids(head.grid))


def test_one_id_one_head_and_ids_differ():
    grid = H.template(VOX)
    a, b, c = H.build_head(5, grid), H.build_head(5, grid), H.build_head(6, grid)
    assert np.array_equal(a.labels, b.labels)
    assert a.eye_centres_mm == b.eye_centres_mm
    outside = ~np.isin(a.labels, H.INTRACRANIAL)
    assert (a.labels != c.labels)[outside].mean() > 0.01  # other thicknesses, eyes, sinuses
    with pytest.raises(ValueError, match="head_id"):
        H.head(-1, VOX)


def test_every_part_of_a_head_is_there(head):
    counts = np.bincount(head.labels.ravel(), minlength=len(H.LABEL_NAMES))
    missing = [name for name, n in zip(H.LABEL_NAMES, counts, strict=True) if n == 0]
    assert not missing
    assert counts[H.SKIN] > 1000 and counts[H.FAT] > 1000 and counts[H.DIPLOE] > 1000


def test_skull_encloses_the_intracranial_space(head):
    labels = head.labels
    inside = np.isin(labels, H.INTRACRANIAL)
    components, _ = ndi.label(~np.isin(labels, H.SKULL))  # 6-connected: no path through bone
    enclosed = np.unique(components[inside])
    assert not np.isin(components[labels == H.AIR], enclosed).any()
    assert not np.isin(components[np.isin(labels, (H.SKIN, H.FAT, H.MUSCLE))], enclosed).any()
    assert np.isin(labels[H.face_neighbours(inside)], H.SKULL).all()


def test_eyes_are_in_the_orbits_in_front_of_the_brain(head, mm):
    x, y, z = mm
    brain = np.isin(head.labels, (H.GM, H.WM))
    assert len(head.eye_centres_mm) == 2
    assert {np.sign(e[0]) for e in head.eye_centres_mm} == {-1.0, 1.0}
    for _, ey, ez in head.eye_centres_mm:
        level = brain & (np.abs(z - ez) <= VOX)
        assert ey > y[level].max() + 10          # in front of the brain at the eyes' level
        assert ez < z[brain].mean() - 30         # low in the head
    vitreous, lens = head.labels == H.VITREOUS, head.labels == H.LENS
    assert y[lens].mean() > y[vitreous].mean() + 5  # the lens at the front of the globe
    assert x[vitreous & (x < 0)].size and x[vitreous & (x > 0)].size


def test_every_axial_level_from_below_the_skull_base_to_the_vertex_is_a_head(head, mm):
    x, y, z = mm
    brain_z = z[np.isin(head.labels, (H.GM, H.WM)) & (z > -70)]
    grid = head.grid
    k_top = grid.index_of(2, int(brain_z.max() - H.TEMPLATE_ORIGIN_MM[2]))
    for k in range(2, k_top + 2):
        level = head.labels[:, :, k]
        assert (level != H.AIR).mean() > 0.03, f"axial level {grid.coordinate(2, k)} mm is empty"
        assert (level == H.SKIN).any()
        if np.isin(level, (H.GM, H.WM)).any() and grid.coordinate(2, k) > -60:
            assert np.isin(level, H.SKULL).any()
    axial = P.head_slices(head, "axial")
    assert min(axial) < 0  # template index: below the template's (skull-stripped) bottom
    assert max(axial) >= brain_z.max() - H.TEMPLATE_ORIGIN_MM[2]


@pytest.mark.parametrize("corner", [0, 1])
def test_contrast_tables_order_tissues(corner):
    for contrast, ((tr_lo, tr_hi), (te_lo, te_hi)) in T.SEQUENCES.items():
        s = T.spin_echo(contrast, (tr_lo, tr_hi)[corner], (te_lo, te_hi)[corner])
        assert s[H.AIR] == s[H.SINUS] == 0
        assert max(s[H.OUTER_TABLE], s[H.INNER_TABLE], s[H.BONE]) < 0.1 * s.max()
        if contrast == "T1":
            assert s[H.CSF] < s[H.GM] < s[H.WM] < s[H.FAT]
            assert s[H.DIPLOE] > s[H.WM] and s[H.VITREOUS] < s[H.GM]
        if contrast == "T2":
            assert s[H.CSF] > s[H.GM] > s[H.WM] and s[H.CSF] > s[H.FAT] and s[H.VITREOUS] > s[H.LENS]
            assert s[H.MUSCLE] < s[H.GM]
        if contrast == "PD":
            assert s[H.GM] > s[H.WM] and s[H.FAT] > s[H.WM]


def test_rendered_mri_orders_tissues_as_its_table():
    def means(contrast):
        pair = P.render_head_pair(5, "axial", 95, P.Settings(contrast=contrast, quantise=False), size=160,
                                  voxel_mm=VOX)
        out = {}
        for label in (H.CSF, H.GM, H.WM, H.FAT, H.OUTER_TABLE):
            core = ndi.binary_erosion(pair.labels == label)  # away from partial volume
            out[label] = float(pair.mri[core].mean()) if core.any() else float(pair.mri[pair.labels == label].mean())
        return out
    t1, t2 = means("T1"), means("T2")
    assert t1[H.CSF] < t1[H.GM] < t1[H.WM] < t1[H.FAT]
    assert t2[H.CSF] > t2[H.GM] > t2[H.WM]
    assert t1[H.OUTER_TABLE] < 0.25 * t1[H.FAT] and t2[H.OUTER_TABLE] < 0.25 * t2[H.CSF]


def region_means(head, mm, tracer, **kwargs):
    x, y, z = H.mm_grids(head.grid)
    grid = head.grid
    u = T.uptake(tracer, head.labels, grid.gm, grid.wm, x, y, z, **kwargs)
    X, Y, Z = mm
    labels = head.labels
    grey, white = grid.gm > 0.9, grid.wm > 0.9  # pure tissue, away from partial volume
    cortex = grey & ~H.cerebellum(X, Y, Z) & ~H.striatum(x, y, z)
    cerebellum = grey & H.cerebellum(X, Y, Z)
    striatum = H.striatum(x, y, z) & np.isin(labels, (H.GM, H.WM))
    brain_rest = np.isin(labels, (H.GM, H.WM)) & ~striatum
    scalp = np.isin(labels, (H.SKIN, H.FAT, H.MUSCLE))
    return {name: float(u[mask].mean()) for name, mask in
            {"cortex": cortex, "wm": white, "cerebellum": cerebellum, "striatum": striatum,
             "brain_rest": brain_rest, "scalp": scalp, "csf": labels == H.CSF}.items()}


def test_tracer_uptake_patterns(head, mm):
    fdg = region_means(head, mm, "fdg")
    assert fdg["cortex"] > 3.5 * fdg["wm"] > fdg["csf"] and fdg["scalp"] < 0.15 * fdg["cortex"]
    negative = region_means(head, mm, "amyloid")
    positive = region_means(head, mm, "amyloid", positive=True)
    assert negative["wm"] > negative["cortex"]
    assert positive["cortex"] > 1.5 * negative["cortex"]
    assert positive["cerebellum"] == pytest.approx(negative["cerebellum"])  # the reference region
    dat = region_means(head, mm, "dat")
    assert dat["striatum"] > 3 * dat["brain_rest"] and dat["scalp"] < dat["striatum"] / 5
    perfusion = region_means(head, mm, "perfusion")
    assert perfusion["cerebellum"] > perfusion["cortex"] > 2 * perfusion["wm"]
    with pytest.raises(ValueError, match="tracer"):
        region_means(head, mm, "water")


def test_dat_putamen_loss_spares_the_caudate(head):
    x, y, z = H.mm_grids(head.grid)
    grid = head.grid
    normal = T.uptake("dat", head.labels, grid.gm, grid.wm, x, y, z)
    lost = T.uptake("dat", head.labels, grid.gm, grid.wm, x, y, z, putamen_loss=0.8)
    X = np.broadcast_to(x, head.labels.shape)
    striatum = H.striatum(x, y, z) & np.isin(head.labels, (H.GM, H.WM))
    putamen, caudate = striatum & (np.abs(X) > 20), striatum & (np.abs(X) <= 20)
    assert lost[putamen].mean() < 0.6 * normal[putamen].mean()
    assert lost[caudate].mean() == pytest.approx(normal[caudate].mean())


def test_spect_is_blurrier_than_pet():
    def sharpness(fwhm):
        pet = P.render_head_pair(5, "axial", 95, P.Settings(fwhm_mm=fwhm, colour_map="grey", quantise=False),
                                 size=128, voxel_mm=VOX).pet
        return float(np.abs(np.diff(pet, axis=0)).mean() + np.abs(np.diff(pet, axis=1)).mean())
    assert sharpness(4.0) > 1.3 * sharpness(12.0)


@pytest.mark.parametrize("colour_map", ["hot", "rainbow", "jet"])
def test_colour_pet_reaches_the_network_as_its_luminance(tmp_path, colour_map):
    pair = P.render_head_pair(5, "axial", 95, P.Settings(colour_map=colour_map, counts=80.0),
                              np.random.default_rng(1), size=96, voxel_mm=VOX)
    rgb = pair.pet_rgb
    assert rgb.shape == (96, 96, 3) and rgb.dtype == np.float32
    assert np.abs(rgb[..., 0] - rgb[..., 2]).max() > 0.3  # really colour
    np.testing.assert_allclose(pair.pet, unit_scale(luminance(rgb)), atol=1e-6)
    np.testing.assert_allclose(rgb * 255, np.round(rgb * 255), atol=1e-3)  # 8-bit, as in a PNG
    mri_path, pet_path = tmp_path / "mri.png", tmp_path / "pet.png"
    Image.fromarray(np.round(pair.mri * 255).astype(np.uint8)).save(mri_path)
    Image.fromarray(np.round(rgb * 255).astype(np.uint8)).save(pet_path)
    a, b = fusion.load_pair(mri_path, pet_path)
    np.testing.assert_allclose(a, pair.mri, atol=1e-6)
    np.testing.assert_allclose(b, pair.pet, atol=2 / 255)


def test_grey_map_is_grey_and_hot_luminance_rises():
    values = np.linspace(0, 1, 101)[None]
    grey = T.apply_colour_map(values, "grey")
    assert np.array_equal(grey[..., 0], grey[..., 1]) and np.array_equal(grey[..., 1], grey[..., 2])
    assert (np.diff(luminance(T.apply_colour_map(values, "hot"))[0]) > 0).all()
    with pytest.raises(ValueError, match="colour map"):
        T.apply_colour_map(values, "viridis")


def test_draws_are_deterministic_per_seed():
    def draw(seed):
        return P.draw_head_pair(np.random.default_rng(seed), [5, 6], size=64, voxel_mm=VOX)
    a, b, c = draw(3), draw(3), draw(4)
    assert (a.head_id, a.axis, a.index, a.settings) == (b.head_id, b.axis, b.index, b.settings)
    assert np.array_equal(a.mri, b.mri) and np.array_equal(a.pet_rgb, b.pet_rgb)
    assert not (np.array_equal(a.mri, c.mri) and np.array_equal(a.pet, c.pet))


def test_training_never_draws_a_held_out_head_or_slice(monkeypatch):
    from fusion.training_data import SimulatedMNI

    ids = H.training_heads()
    assert not set(ids) & set(range(900)) and not set(ids) & set(H.VALIDATION_HEADS)
    assert all(H.is_training_head(i) for i in ids) and not any(H.is_training_head(i) for i in range(1000))
    small = H.head(5, VOX)
    monkeypatch.setattr(H, "head", lambda head_id, voxel_mm=1: small)  # slice tables only: any head will do
    excluded = {"axial": [60, 95], "coronal": [100], "sagittal": [70]}
    rng = np.random.default_rng(0)
    for _ in range(300):
        head_id, axis, index = P.choose_slice(rng, ids, excluded)
        assert head_id in ids and all(abs(index - j) > 4 for j in excluded[axis])

    source = SimulatedMNI(seed=0, val_pairs=0)
    assert source.heads == ids and source.excluded == sample_slice_indices()
    drawn = []
    monkeypatch.setattr(P, "render_head_pair", lambda head_id, *args, **kw: drawn.append(head_id) or
                        P.HeadPair(np.zeros((8, 8)), np.zeros((8, 8)), np.zeros((8, 8, 3)), np.zeros((8, 8)),
                                   head_id, "axial", 0))
    for step in range(40):
        source.draw(np.random.default_rng([0, step]))
    assert drawn and all(H.is_training_head(i) for i in drawn)


def test_bundled_head_samples_are_colour_pairs_from_held_out_heads():
    from fusion.data import list_samples, sample_paths

    heads = [name for name in list_samples() if name.startswith("head-")]
    assert len(heads) >= 2
    assert all(not H.is_training_head(h) and h not in H.VALIDATION_HEADS for h, *_ in P.BUNDLED_SAMPLES)
    assert {f"head-{axis}-{index:03d}" for _, axis, index, _ in P.BUNDLED_SAMPLES} == set(heads)
    excluded = sample_slice_indices()
    for name in heads:
        pair = fusion.load_pair(*sample_paths(name))
        assert pair.is_colour and pair.mri.shape == (256, 256)
        axis, index = name.removeprefix("head-").rsplit("-", 1)
        assert int(index) in excluded[axis]
    notice = (sample_paths(heads[0])[0].parent / "NOTICE.txt").read_text()
    assert "head-AXIS-NNN" in notice and "McConnell" in notice


def test_batches_made_ahead_by_workers_are_the_serial_batches():
    from fusion.training_data import Batches, make_source

    source = make_source("samples", seed=0, val_pairs=1)
    keys = [[0, step] for step in range(6)]
    serial = list(Batches(source, 2, 32).iterate(keys))
    ahead = Batches(source, 2, 32, workers=2)
    try:
        parallel = list(ahead.iterate(keys))
    finally:
        ahead.close()
    assert len(parallel) == len(serial) == 6
    for (a1, b1), (a2, b2) in zip(serial, parallel, strict=True):
        assert a1.shape == (2, 1, 32, 32)
        assert torch.equal(a1, a2) and torch.equal(b1, b2)
    assert not torch.equal(serial[0][0], serial[1][0])
