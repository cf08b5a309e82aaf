"""Colour PET (issue 12): YCbCr against Pillow, colour pairs loaded, fused in colour, stored and refused."""
import io

import numpy as np
import pytest
import torch
from PIL import Image

import fusion
from fusion.__main__ import main
from fusion.io import ColourImage, Pair, check_colour_pair, load_colour_image, to_unit_colour
from fusion.serving import SaliencyService
from fusion.ycbcr import luminance, rgb_to_ycbcr, rgb_with_y, ycbcr_to_rgb

SIDE = 32
EIGHT_BIT = 0.5 / 255 + 1e-6  # one 8-bit rounding of each RGB channel moves Y, Cb or Cr by at most this


def hot(t: np.ndarray) -> np.ndarray:
    """The 'hot' colour map: black -> red -> yellow -> white, (..., 3) in [0, 1]."""
    return np.stack([np.clip(3 * t, 0, 1), np.clip(3 * t - 1, 0, 1), np.clip(3 * t - 2, 0, 1)], axis=-1)


def hot_pet(side=SIDE, lo=0.1, hi=0.9) -> np.ndarray:
    """(side, side, 3) uint8: the hot map on a diagonal ramp from ``lo`` to ``hi``."""
    ramp = np.add.outer(np.arange(side), np.arange(side)) / (2 * side - 2)
    return np.round(hot(lo + (hi - lo) * ramp) * 255).astype(np.uint8)


def grey_mri(side=SIDE, seed=0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (side, side), dtype=np.uint8)


def save(path, array, **kwargs):
    Image.fromarray(array).save(path, **kwargs)
    return path


def in_gamut(y: np.ndarray, chroma: np.ndarray) -> np.ndarray:
    """(H, W) bool: where Y with this chroma is an RGB colour (no channel outside [0, 1])."""
    rgb = (np.dstack([y, chroma]) - [0, 0.5, 0.5]) @ np.linalg.inv(
        [[0.299, 0.587, 0.114], [-0.168736, -0.331264, 0.5], [0.5, -0.418688, -0.081312]]).T
    return ((rgb >= -1e-6) & (rgb <= 1 + 1e-6)).all(axis=-1)


def expected_colour(rgb8: np.ndarray):
    """(scaled Y, chroma, (lo, hi)) computed here from the definition, for an 8-bit RGB image."""
    ycc = rgb_to_ycbcr(rgb8 / 255.0).astype(np.float64)
    y = (rgb8 / 255.0) @ np.array([0.299, 0.587, 0.114])
    lo, hi = y.min(), y.max()
    return (y - lo) / (hi - lo), ycc[..., 1:], (lo, hi)


# ------------------------------------------------------------------ fusion.ycbcr
def test_ycbcr_matches_pillow_within_8_bit_rounding():
    rng = np.random.default_rng(1)
    rgb = rng.integers(0, 256, (SIDE, SIDE, 3), dtype=np.uint8)
    rgb[0, :8] = [[0, 0, 0], [255, 255, 255], [255, 0, 0], [0, 255, 0], [0, 0, 255], [255, 255, 0],
                  [0, 255, 255], [255, 0, 255]]
    pillow = np.asarray(Image.fromarray(rgb).convert("YCbCr"), np.float64)
    centre = np.array([0.0, 0.5, 0.5])  # JPEG centres 8-bit Cb, Cr on 128, ours on 0.5 = 127.5 / 255
    ours = rgb_to_ycbcr(rgb / 255.0)
    assert ours.dtype == np.float32
    assert np.abs(ours * 255 + centre - pillow).max() <= 1.01  # Pillow truncates (fixed-point arithmetic)
    back = np.asarray(Image.fromarray(pillow.astype(np.uint8), "YCbCr").convert("RGB"), np.float64)
    assert np.abs(ycbcr_to_rgb((pillow - centre) / 255) * 255 - back).max() <= 1.0  # Pillow truncates
    np.testing.assert_allclose(ycbcr_to_rgb(rgb_to_ycbcr(rgb / 255.0)), rgb / 255.0, atol=1e-5)
    np.testing.assert_allclose(luminance(rgb / 255.0), ours[..., 0], atol=1e-6)


def test_rgb_with_y_keeps_luminance_exactly_and_chroma_where_it_fits():
    rng = np.random.default_rng(2)
    chroma = rgb_to_ycbcr(rng.random((SIDE, SIDE, 3)))[..., 1:]
    y = rng.random((SIDE, SIDE)).astype(np.float32)
    rgb = rgb_with_y(y, chroma)
    assert rgb.dtype == np.float32 and rgb.min() >= 0 and rgb.max() <= 1
    got = rgb_to_ycbcr(rgb)
    np.testing.assert_allclose(got[..., 0], y, atol=1e-5)
    fits = in_gamut(y, chroma)
    assert 0.1 < fits.mean() < 0.9  # both cases occur
    np.testing.assert_allclose(got[fits][:, 1:], chroma[fits], atol=1e-5)
    # out of gamut: the same hue (direction from grey), less saturated
    inside, outside = got[~fits][:, 1:] - 0.5, chroma[~fits] - 0.5
    ratio = (inside * outside).sum(-1) / (outside * outside).sum(-1)
    assert (ratio < 1 + 1e-6).all() and (ratio >= -1e-6).all()
    np.testing.assert_allclose(inside, ratio[:, None] * outside, atol=1e-5)


# ------------------------------------------------------------------ loading
def test_colour_pet_png_loads_with_its_y_chroma_and_range(tmp_path):
    pet = hot_pet()
    pair = fusion.load_pair(save(tmp_path / "mri.png", grey_mri()), save(tmp_path / "pet.png", pet))
    assert isinstance(pair, Pair) and pair.is_colour
    y, chroma, (lo, hi) = expected_colour(pet)
    assert pair.pet.dtype == np.float32 and pair.pet_chroma.dtype == np.float32
    assert pair.pet_chroma.shape == (SIDE, SIDE, 2)
    np.testing.assert_allclose(pair.pet, y, atol=1e-6)
    np.testing.assert_allclose(pair.pet_chroma, chroma, atol=1e-6)
    np.testing.assert_allclose(pair.pet_range, (lo, hi), atol=1e-9)
    a, b = pair  # unpacks and indexes as before
    assert a is pair.mri and b is pair.pet and pair[1] is pair.pet and len(pair) == 2
    np.testing.assert_allclose(a, grey_mri() / 255.0, atol=1e-6)
    # the grey reader (load_image) sees the same luminance
    np.testing.assert_allclose(fusion.load_image(tmp_path / "pet.png"), pair.pet, atol=1e-6)


def test_a_colour_mri_becomes_its_luminance(tmp_path):
    pet = hot_pet()
    pair = fusion.load_pair(save(tmp_path / "mri.png", pet), save(tmp_path / "pet.png", grey_mri()))
    assert not pair.is_colour
    np.testing.assert_allclose(pair.mri, expected_colour(pet)[0], atol=1e-6)


def test_equal_channels_are_grey(tmp_path):
    grey = grey_mri(seed=3)
    rgb = np.repeat(grey[..., None], 3, axis=-1)
    for path in (save(tmp_path / "rgb.png", rgb), save(tmp_path / "la.png", np.dstack([grey, grey * 0 + 255]))):
        pair = fusion.load_pair(save(tmp_path / "mri.png", grey_mri()), path)
        assert not pair.is_colour and pair.pet_chroma is None and pair.pet_range == (0.0, 1.0)
        np.testing.assert_allclose(pair.pet, (grey - grey.min()) / (grey.max() - grey.min()), atol=1e-6)
    np.save(tmp_path / "rgb.npy", rgb.astype(np.float64) * 7)
    assert load_colour_image(tmp_path / "rgb.npy").chroma is None
    # the fused image of a grey pair: the fused grey in three channels, on the network's scale
    fused = np.random.default_rng(0).random((SIDE, SIDE)).astype(np.float32)
    shown = pair.colour_fused(fused)
    assert shown.shape == (SIDE, SIDE, 3) and (shown == fused[..., None]).all()


def test_palette_gif_keeps_colour_and_a_grey_palette_stays_grey(tmp_path):
    Image.fromarray(hot_pet()).convert("P", palette=Image.Palette.ADAPTIVE, colors=64).save(tmp_path / "pet.gif")
    shown = np.asarray(Image.open(tmp_path / "pet.gif").convert("RGB"))
    assert len(np.unique(shown.reshape(-1, 3), axis=0)) > 8
    image = load_colour_image(tmp_path / "pet.gif")
    y, chroma, y_range = expected_colour(shown)
    np.testing.assert_allclose(image.y, y, atol=1e-6)
    np.testing.assert_allclose(image.chroma, chroma, atol=1e-6)
    np.testing.assert_allclose(image.y_range, y_range, atol=1e-9)
    Image.fromarray(grey_mri()).convert("P").save(tmp_path / "grey.gif")
    assert load_colour_image(tmp_path / "grey.gif").chroma is None


def test_rgba_cmyk_16_bit_and_arrays(tmp_path):
    pet = hot_pet()
    reference = load_colour_image(save(tmp_path / "pet.png", pet))
    rgba = load_colour_image(save(tmp_path / "pet_rgba.png", np.dstack([pet, np.full(pet.shape[:2], 9, np.uint8)])))
    np.testing.assert_array_equal(rgba.chroma, reference.chroma)  # alpha dropped
    Image.fromarray(pet).convert("CMYK").save(tmp_path / "pet.tif")
    cmyk = load_colour_image(tmp_path / "pet.tif")
    assert cmyk.chroma is not None and np.abs(cmyk.chroma - reference.chroma).max() <= 2 / 255
    sixteen = (np.arange(SIDE * SIDE).reshape(SIDE, SIDE) * 60).astype(np.uint16)
    Image.fromarray(sixteen).save(tmp_path / "grey16.png")
    assert load_colour_image(tmp_path / "grey16.png").chroma is None
    np.save(tmp_path / "pet16.npy", pet.astype(np.uint16) * 257)  # 16-bit colour: / 65535
    np.testing.assert_allclose(load_colour_image(tmp_path / "pet16.npy").chroma, reference.chroma, atol=1e-6)
    from_floats = to_unit_colour(pet / 255.0)
    np.testing.assert_allclose(from_floats.chroma, reference.chroma, atol=1e-6)
    np.testing.assert_allclose(from_floats.y_range, reference.y_range, atol=1e-9)
    np.testing.assert_allclose(to_unit_colour(pet.astype(np.float32)).chroma, reference.chroma, atol=1e-6)


def test_nifti_colour_slice(tmp_path):
    import nibabel as nib

    pet = hot_pet()
    nib.save(nib.Nifti1Image(pet.astype(np.float32) / 255, np.eye(4)), tmp_path / "pet.nii.gz")
    reference = load_colour_image(save(tmp_path / "pet.png", pet))
    np.testing.assert_allclose(load_colour_image(tmp_path / "pet.nii.gz").chroma, reference.chroma, atol=1e-6)
    header = nib.Nifti1Header()
    header.set_data_dtype("RGB")
    voxels = np.zeros((SIDE, SIDE, 5), dtype=header.get_data_dtype())
    for k, channel in enumerate("RGB"):
        voxels[channel][:, :, 2] = pet[..., k]
    nib.save(nib.Nifti1Image(voxels, np.eye(4), header), tmp_path / "rgb24.nii")
    rgb24 = load_colour_image(tmp_path / "rgb24.nii")
    np.testing.assert_allclose(rgb24.chroma, reference.chroma, atol=1e-6)


@pytest.mark.parametrize("array,match", [
    (np.zeros((SIDE, SIDE, 2)), "grey or colour image"),
    (np.zeros((SIDE, SIDE, 5)), "grey or colour image"),
    (np.zeros((SIDE, SIDE, 2, 3)), "grey or colour image"),
    (np.where(np.eye(SIDE)[..., None], np.nan, hot_pet() / 255.0), "NaN"),
    (hot_pet() / 255.0 - 0.5, "must not be negative"),
    (np.zeros((SIDE, SIDE, 3)), "constant"),
    (np.full((4, SIDE, 3), 0.5), "at least"),
])
def test_hostile_colour_arrays_are_refused(array, match):
    with pytest.raises(fusion.InvalidInput, match=match):
        to_unit_colour(array, "PET")


def test_hostile_colour_files_are_refused(tmp_path):
    np.save(tmp_path / "two.npy", np.zeros((SIDE, SIDE, 2), np.float32))
    with pytest.raises(fusion.InvalidInput, match="two.npy: expected a 2-D grey or colour image"):
        fusion.load_pair(save(tmp_path / "mri.png", grey_mri()), tmp_path / "two.npy")
    nan = (hot_pet() / 255.0).astype(np.float32)
    nan[3, 4, 1] = np.nan
    np.save(tmp_path / "nan.npy", nan)
    with pytest.raises(fusion.InvalidInput, match="nan.npy: image contains NaN"):
        fusion.load_pair(tmp_path / "mri.png", tmp_path / "nan.npy")
    with pytest.raises(fusion.InvalidInput, match="differ in size"):
        fusion.load_pair(tmp_path / "mri.png", save(tmp_path / "small.png", hot_pet(side=16)))


def test_check_colour_pair_validates_chroma_and_range():
    mri, pair = grey_mri(), to_unit_colour(hot_pet())
    good = check_colour_pair(mri, pair.y, pair.chroma, pair.y_range)
    assert good.pet_range == pair.y_range and np.array_equal(good.pet_chroma, pair.chroma)
    half = check_colour_pair(mri, pair.y * 0.5 + 0.25, pair.chroma, (0.2, 0.6))  # b not spanning [0, 1]
    np.testing.assert_allclose(half.pet, pair.y, atol=1e-6)
    np.testing.assert_allclose(half.pet_range, (0.3, 0.5), atol=1e-9)  # the same Y = lo + b * (hi - lo)
    for chroma, pet_range, match in [
        (pair.chroma[..., :1], pair.y_range, "x 2 array"),
        (pair.chroma[:-1], pair.y_range, "x 2 array"),
        (np.where(np.eye(SIDE)[..., None], np.nan, pair.chroma), pair.y_range, "finite and in"),
        (pair.chroma + 0.6, pair.y_range, "finite and in"),
        (pair.chroma, (0.6, 0.2), "lo < hi"),
        (pair.chroma, (0.0, np.inf), "lo < hi"),
        (pair.chroma, "ab", "two numbers"),
    ]:
        with pytest.raises(fusion.InvalidInput, match=match):
            check_colour_pair(mri, pair.y, chroma, pet_range)
    with pytest.raises(fusion.InvalidInput, match="luminance as an H x W"):
        check_colour_pair(mri, hot_pet(), pair.chroma, pair.y_range)


# ------------------------------------------------------------------ colour output
def test_colour_fused_restores_range_and_chroma(tmp_path):
    pet = hot_pet(lo=0.2, hi=0.7)
    pair = fusion.load_pair(save(tmp_path / "mri.png", grey_mri()), save(tmp_path / "pet.png", pet))
    np.testing.assert_allclose(pair.colour_pet() * 255, pet, atol=1e-3)  # the PET itself comes back
    noise = np.random.default_rng(4).normal(0, 0.1, (SIDE, SIDE))
    fused = np.clip(pair.pet + noise, 0, 1).astype(np.float32)
    rgb = pair.colour_fused(fused)
    assert rgb.shape == (SIDE, SIDE, 3) and rgb.dtype == np.float32
    lo, hi = pair.pet_range
    got = rgb_to_ycbcr(rgb)
    np.testing.assert_allclose(got[..., 0], lo + fused * (hi - lo), atol=1e-5)
    fits = in_gamut(lo + fused * (hi - lo), pair.pet_chroma)
    assert fits.any() and not fits.all()  # both cases occur
    np.testing.assert_allclose(got[fits][:, 1:], pair.pet_chroma[fits], atol=1e-5)
    assert (np.abs(got[..., 1:] - 0.5) <= np.abs(pair.pet_chroma - 0.5) + 1e-5).all()  # never more saturated
    np.testing.assert_array_equal(pair.colour_fused(fused + 5), pair.colour_fused(np.ones_like(fused)))  # clipped
    with pytest.raises(ValueError, match="fused image"):
        pair.colour_fused(fused[1:])


def fuse(name, a, b):
    model = fusion.create_model(name)
    with torch.no_grad():
        return model(torch.from_numpy(a)[None, None], torch.from_numpy(b)[None, None])[0, 0].numpy()


@pytest.mark.parametrize("name", fusion.list_models())
def test_cli_fuse_writes_rgb_for_a_colour_pet_and_grey_otherwise(tmp_path, name):
    mri = save(tmp_path / "mri.png", grey_mri())
    colour_pet = save(tmp_path / "pet.png", hot_pet())
    grey_pet = save(tmp_path / "grey.png", np.asarray(Image.fromarray(hot_pet()).convert("L")))
    assert main(["fuse", "--model", name, str(mri), str(colour_pet), "--out", str(tmp_path / "c.png")]) == 0
    assert main(["fuse", "--model", name, str(mri), str(grey_pet), "--out", str(tmp_path / "g.png")]) == 0
    with Image.open(tmp_path / "c.png") as written:
        assert written.mode == "RGB"
        ycc = rgb_to_ycbcr(np.asarray(written) / 255.0)
    pair = fusion.load_pair(mri, colour_pet)
    lo, hi = pair.pet_range
    y = lo + np.clip(fuse(name, *pair), 0, 1) * (hi - lo)  # the network's output on the PET's range
    assert np.abs(ycc[..., 0] - y).max() <= EIGHT_BIT
    fits = in_gamut(y, pair.pet_chroma)
    assert np.abs(ycc[fits][:, 1:] - pair.pet_chroma[fits]).max() <= EIGHT_BIT
    # where the fused Y is brighter than the PET's colour allows, the hue stays and saturation drops
    assert (np.abs(ycc[..., 1:] - 0.5) <= np.abs(pair.pet_chroma - 0.5) + EIGHT_BIT).all()
    with Image.open(tmp_path / "g.png") as written:
        assert written.mode == "L"
        grey = np.asarray(written)
    np.testing.assert_array_equal(grey, np.round(np.clip(fuse(name, *fusion.load_pair(mri, grey_pet)), 0, 1) * 255))


# ------------------------------------------------------------------ service and HDF5
def test_service_stores_and_returns_the_colour(tmp_path):
    pair = fusion.load_pair(save(tmp_path / "mri.png", grey_mri()), save(tmp_path / "pet.png", hot_pet()))
    service = SaliencyService(cache_dir=tmp_path / "cache", checkpoint=None)
    colour_id = service.put_pair(*pair, pet_chroma=pair.pet_chroma, pet_range=pair.pet_range)
    grey_id = service.put_pair(*pair)
    assert colour_id != grey_id and service.put_pair(pair.mri, hot_pet()) == colour_id  # RGB array: same pair
    assert service.put_pair(*pair, pet_chroma=pair.pet_chroma, pet_range=(0.0, 1.0)) != colour_id
    assert service.pair_colour(grey_id) is None
    a, b = service.get_pair(colour_id)
    assert np.array_equal(a, pair.mri) and np.array_equal(b, pair.pet)
    other = SaliencyService(cache_dir=tmp_path / "cache", checkpoint=None)  # another process: from the disk
    chroma, pet_range = other.pair_colour(colour_id)
    np.testing.assert_array_equal(chroma, pair.pet_chroma)
    assert pet_range == pair.pet_range and other.pair_colour(grey_id) is None
    np.testing.assert_allclose(other.pet_colour(colour_id), pair.colour_pet())
    with pytest.raises(fusion.InvalidInput, match="unknown or expired"):
        other.pair_colour("0" * 32)
    with pytest.raises(fusion.InvalidInput, match="x 2 array"):
        service.put_pair(*pair, pet_chroma=pair.pet_chroma[..., 0])
    for svc in (service, other):
        svc.close()


@pytest.mark.parametrize("name", fusion.list_models())
def test_service_fused_colour(tmp_path, name):
    pair = fusion.load_pair(save(tmp_path / "mri.png", grey_mri()), save(tmp_path / "pet.png", hot_pet()))
    service = SaliencyService(cache_dir=tmp_path / "cache", checkpoint=None)
    colour_id = service.put_pair(*pair, pet_chroma=pair.pet_chroma, pet_range=pair.pet_range)
    grey_id = service.put_pair(*pair)
    rgb = service.fused_colour(name, colour_id)
    assert rgb.shape == (SIDE, SIDE, 3) and rgb.dtype == np.float32
    np.testing.assert_array_equal(rgb, pair.colour_fused(service.fuse(name, colour_id)))
    assert service.fused_colour(name, colour_id) is rgb  # cached
    grey = service.fused_colour(name, grey_id)
    np.testing.assert_array_equal(grey, np.repeat(np.clip(service.fuse(name, grey_id), 0, 1)[..., None], 3, -1))
    np.testing.assert_array_equal(service.fuse(name, colour_id), service.fuse(name, grey_id))  # Y alone is fused
    service.close()


def test_saliency_hdf5_keeps_the_colour(tmp_path):
    import h5py

    from fusion.saliency import load_hdf5

    mri, pet = save(tmp_path / "mri.png", grey_mri()), save(tmp_path / "pet.png", hot_pet())
    out = tmp_path / "s.h5"
    assert main(["saliency", "--model", "weighted-average", "--pair", str(mri), str(pet), "--out", str(out),
                 "--cache-dir", str(tmp_path / "cache"), "--quiet"]) == 0
    pair, back = fusion.load_pair(mri, pet), load_hdf5(out)
    assert isinstance(back.inputs, Pair) and back.inputs.is_colour
    np.testing.assert_array_equal(back.inputs.pet_chroma, pair.pet_chroma)
    assert back.inputs.pet_range == pair.pet_range and np.array_equal(back.inputs.pet, pair.pet)
    with h5py.File(out, "r+") as f:
        f["pair/pet_chroma"][0, 0, 0] = 1.5
    with pytest.raises(ValueError, match="outside"):
        load_hdf5(out)
    with h5py.File(out, "r+") as f:
        f["pair/pet_chroma"][0, 0, 0] = 0.5
        f["pair"].attrs["pet_range"] = [0.9, 0.1]
    with pytest.raises(ValueError, match="pet_range"):
        load_hdf5(out)
    with h5py.File(out, "r+") as f:
        del f["pair"].attrs["pet_range"]
    with pytest.raises(ValueError, match="no pet_range"):
        load_hdf5(out)
    grey_out = tmp_path / "g.h5"
    assert main(["saliency", "--model", "weighted-average", "--pair", str(mri), str(mri), "--out", str(grey_out),
                 "--cache-dir", str(tmp_path / "cache"), "--quiet"]) == 0
    assert not load_hdf5(grey_out).inputs.is_colour


def test_colour_image_is_the_loaders_result(tmp_path):
    image = load_colour_image(save(tmp_path / "pet.png", hot_pet()).read_bytes(), "upload.png")
    assert isinstance(image, ColourImage) and image.chroma is not None
    buffer = io.BytesIO()
    Image.fromarray(hot_pet()).save(buffer, format="PNG")
    pair = fusion.load_pair(save(tmp_path / "mri.png", grey_mri()).read_bytes(), buffer.getvalue(),
                            ("mri.png", "pet.png"))
    np.testing.assert_array_equal(pair.pet_chroma, image.chroma)
