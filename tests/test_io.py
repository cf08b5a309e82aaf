"""Loading image pairs, and refusing everything that cannot be fused."""
import gzip
import io

import bomb_files
import numpy as np
import pytest
from PIL import Image

import fusion
from fusion.data import list_samples, load_sample, sample_paths


def gradient(h=40, w=48):
    return np.add.outer(np.arange(h), np.arange(w)).astype(np.float32)


def save(path, array, fmt=None):
    Image.fromarray(array).save(path, format=fmt)
    return path


def test_bundled_samples_load_as_unit_float_pairs():
    names = list_samples()
    axes = {n.removeprefix("head-").split("-")[0] for n in names}  # head-AXIS-NNN: simulated whole heads
    assert len(names) >= 5 and axes == {"axial", "coronal", "sagittal"}
    a, b = load_sample(names[0])
    assert a.shape == b.shape == (256, 256)
    assert a.dtype == b.dtype == np.float32
    assert a.min() == 0 and a.max() == 1 and b.min() == 0 and b.max() == 1
    assert (sample_paths(names[0])[0].parent / "NOTICE.txt").read_text().count("McConnell") == 1


@pytest.mark.parametrize("fmt,suffix", [("PNG", ".png"), ("GIF", ".gif"), ("TIFF", ".tif"), ("BMP", ".bmp")])
def test_raster_formats(tmp_path, fmt, suffix):
    grey = (gradient() / gradient().max() * 255).astype(np.uint8)
    a, b = fusion.load_pair(save(tmp_path / f"a{suffix}", grey, fmt), save(tmp_path / f"b{suffix}", 255 - grey, fmt))
    assert a.shape == (40, 48)
    np.testing.assert_allclose(a, grey / 255.0, atol=1e-6)
    np.testing.assert_allclose(b, 1 - grey / 255.0, atol=1e-6)


def test_colour_pet_converted_with_luma_weights(tmp_path):
    rgb = np.zeros((16, 16, 3), np.uint8)
    rgb[:8, :, 0] = 200  # red top half
    rgb[8:, :, 1] = 100  # green bottom half
    path = save(tmp_path / "pet.png", rgb)
    image = fusion.load_image(path)
    red, green = 0.299 * 200, 0.587 * 100  # BT.601 luminance
    lo, hi = min(red, green), max(red, green)
    np.testing.assert_allclose(image[0, 0], (red - lo) / (hi - lo), atol=1e-6)
    np.testing.assert_allclose(image[15, 0], (green - lo) / (hi - lo), atol=1e-6)


def test_palette_gif_is_converted_through_rgb(tmp_path):
    rgb = np.random.default_rng(0).integers(0, 255, (20, 20, 3), dtype=np.uint8)
    Image.fromarray(rgb).convert("P").save(tmp_path / "p.gif")
    assert fusion.load_image(tmp_path / "p.gif").shape == (20, 20)


def test_npy_and_16_bit(tmp_path):
    np.save(tmp_path / "a.npy", gradient().astype(np.float64) * 1000)
    Image.fromarray(gradient().astype(np.uint16) * 500).save(tmp_path / "b.png")
    a, b = fusion.load_pair(tmp_path / "a.npy", tmp_path / "b.png")
    np.testing.assert_allclose(a, b, atol=1e-5)


def test_nifti_middle_slice(tmp_path):
    import nibabel as nib

    volume = np.random.default_rng(0).random((20, 24, 9)).astype(np.float32)
    nib.save(nib.Nifti1Image(volume, np.eye(4)), tmp_path / "v.nii.gz")
    image = fusion.load_image(tmp_path / "v.nii.gz")
    mid = volume[:, :, 4]
    np.testing.assert_allclose(image, (mid - mid.min()) / (mid.max() - mid.min()), atol=1e-6)


def test_upload_bytes(tmp_path):
    grey = (gradient() * 2).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(grey).save(buffer, format="PNG")
    assert fusion.load_image(buffer.getvalue(), name="upload.png").shape == (40, 48)


def reject(tmp_path, contents_a, contents_b=None, match=None):
    pa, pb = tmp_path / "a.png", tmp_path / "b.png"
    pa.write_bytes(contents_a)
    good = io.BytesIO()
    Image.fromarray((gradient() * 2).astype(np.uint8)).save(good, format="PNG")
    pb.write_bytes(contents_b if contents_b is not None else good.getvalue())
    with pytest.raises(fusion.InvalidInput, match=match):
        fusion.load_pair(pa, pb)


def png_bytes(array):
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def test_rejects_mismatched_sizes(tmp_path):
    reject(tmp_path, png_bytes(np.zeros((30, 30), np.uint8) + np.eye(30, dtype=np.uint8)), match="differ in size")


def test_rejects_constant_image(tmp_path):
    reject(tmp_path, png_bytes(np.full((40, 48), 7, np.uint8)), match="constant")


def test_rejects_empty_file(tmp_path):
    reject(tmp_path, b"", match="empty")


def test_rejects_truncated_png(tmp_path):
    reject(tmp_path, png_bytes((gradient() * 2).astype(np.uint8))[:60], match="not a readable image")


def test_rejects_non_image(tmp_path):
    reject(tmp_path, b"%PDF-1.4 this is not an image at all" * 10, match="not a readable image")


def test_rejects_nan_and_inf(tmp_path):
    for bad in (np.nan, np.inf):
        array = gradient()
        array[3, 3] = bad
        np.save(tmp_path / "x.npy", array)
        with pytest.raises(fusion.InvalidInput, match="NaN or infinite"):
            fusion.load_image(tmp_path / "x.npy")


def test_rejects_wrong_dimensionality(tmp_path):
    np.save(tmp_path / "x.npy", np.random.default_rng(0).random((4, 16, 16)))
    with pytest.raises(fusion.InvalidInput, match="2-D"):
        fusion.load_image(tmp_path / "x.npy")
    np.save(tmp_path / "y.npy", np.arange(50.0))
    with pytest.raises(fusion.InvalidInput, match="2-D"):
        fusion.load_image(tmp_path / "y.npy")


def test_rejects_tiny_image(tmp_path):
    np.save(tmp_path / "x.npy", np.random.default_rng(0).random((4, 16)))
    with pytest.raises(fusion.InvalidInput, match="at least"):
        fusion.load_image(tmp_path / "x.npy")


def test_rejects_pickled_npy(tmp_path):
    np.save(tmp_path / "x.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(fusion.InvalidInput, match="npy"):
        fusion.load_image(tmp_path / "x.npy")


def test_rejects_decompression_bomb(tmp_path):
    # A 1-bit 20000 x 20000 PNG compresses to a few kB but would decode to 400 MP.
    bomb = Image.new("1", (20000, 20000))
    bomb.save(tmp_path / "bomb.png", optimize=True)
    assert (tmp_path / "bomb.png").stat().st_size < 200_000
    with pytest.raises(fusion.InvalidInput, match="decompression bomb|more than"):
        fusion.load_image(tmp_path / "bomb.png")


def test_rejects_gzip_disguised_as_nifti(tmp_path):
    (tmp_path / "v.nii.gz").write_bytes(gzip.compress(b"not a nifti header" * 30))
    with pytest.raises(fusion.InvalidInput, match="NIfTI"):
        fusion.load_image(tmp_path / "v.nii.gz")


def test_missing_file(tmp_path):
    with pytest.raises(fusion.InvalidInput, match="no such file"):
        fusion.load_pair(tmp_path / "nope.png", tmp_path / "nope2.png")


def test_invalid_input_is_a_value_error():
    assert issubclass(fusion.InvalidInput, ValueError)


# ---------------------------------------------------------------- hostile input (issue 11)
def peak_growth_mb(action) -> float:
    """How far this process's peak resident memory rose above its level while ``action`` ran (Linux)."""
    def status(key):
        line = next(x for x in open("/proc/self/status") if x.startswith(key + ":"))
        return int(line.split()[1]) / 1024

    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # reset the peak (VmHWM) to the current resident size
    before = status("VmRSS")
    action()
    return status("VmHWM") - before


def refused(data, name, match="allowed", **limits):
    def action():
        with pytest.raises(fusion.InvalidInput, match=match):
            fusion.load_image(data, name, **limits)
    return peak_growth_mb(action)


@pytest.mark.parametrize("kind", sorted(bomb_files.IMAGE_BOMBS))
def test_bombs_are_refused_from_the_header(tmp_path, kind):
    name, build = bomb_files.IMAGE_BOMBS[kind]
    data = build()
    assert len(data) < 100_000  # tiny files...
    assert refused(data, name) < 40  # ...refused without decoding what they promise (hundreds of MB to GBs)
    (tmp_path / name).write_bytes(data)
    assert refused(tmp_path / name, None) < 40


@pytest.mark.parametrize("kind", ["png", "gif", "tiff", "bmp", "jpeg"])
def test_raster_bombs_under_pillows_own_limit_meet_ours(kind):
    # 5000 x 5000 is under Pillow's decompression-bomb warning (89 MP) but over the 1 MP asked for
    data = getattr(bomb_files, f"{kind}_bomb")(5000)
    assert refused(data, f"x.{kind}", match="5000 x 5000 pixels, more than the 1,048,576 allowed",
                   max_pixels=2**20) < 40


def test_max_pixels_and_max_bytes_are_arguments(tmp_path):
    data = png_bytes((gradient(64, 64) * 2).astype(np.uint8))
    assert fusion.load_image(data, "x.png", max_pixels=64 * 64).shape == (64, 64)
    with pytest.raises(fusion.InvalidInput, match="64 x 64 pixels, more than the 4,095 allowed"):
        fusion.load_image(data, "x.png", max_pixels=64 * 64 - 1)
    with pytest.raises(fusion.InvalidInput, match="MB allowed"):
        fusion.load_image(data, "x.png", max_bytes=len(data) - 1)
    (tmp_path / "x.png").write_bytes(data)
    with pytest.raises(fusion.InvalidInput, match="MB allowed"):
        fusion.load_image(tmp_path / "x.png", max_bytes=len(data) - 1)
    np.save(tmp_path / "big.npy", gradient(64, 64))
    with pytest.raises(fusion.InvalidInput, match="more than the 100 allowed"):
        fusion.load_image(tmp_path / "big.npy", max_pixels=100)
    with pytest.raises(fusion.InvalidInput, match="more than the 100 allowed"):
        fusion.load_pair(tmp_path / "big.npy", tmp_path / "big.npy", max_pixels=100)


def test_truncated_npy_and_nifti_are_refused_from_the_header(tmp_path):
    import nibabel as nib

    np.save(tmp_path / "x.npy", gradient())
    with pytest.raises(fusion.InvalidInput, match="truncated"):
        fusion.load_image((tmp_path / "x.npy").read_bytes()[:-8], "x.npy")
    nib.save(nib.Nifti1Image(np.random.default_rng(0).random((20, 24, 5)).astype(np.float32), np.eye(4)),
             tmp_path / "v.nii")
    with pytest.raises(fusion.InvalidInput, match="truncated"):
        fusion.load_image((tmp_path / "v.nii").read_bytes()[:-8], "v.nii")
    for cut in (3, 100):
        with pytest.raises(fusion.InvalidInput, match="NIfTI"):
            fusion.load_image((tmp_path / "v.nii").read_bytes()[:cut], "v.nii")


@pytest.mark.parametrize("image_class", ["Nifti1Image", "Nifti2Image"])
@pytest.mark.parametrize("zipped", [False, True])
def test_nifti_bytes_read_like_the_file(tmp_path, image_class, zipped):
    import nibabel as nib

    volume = np.random.default_rng(1).random((20, 24, 7)).astype(np.float32)
    name = "v.nii.gz" if zipped else "v.nii"
    nib.save(getattr(nib, image_class)(volume, np.eye(4)), tmp_path / name)
    from_bytes = fusion.load_image((tmp_path / name).read_bytes(), name)
    np.testing.assert_array_equal(from_bytes, fusion.load_image(tmp_path / name))
    mid = volume[:, :, 3]
    np.testing.assert_allclose(from_bytes, (mid - mid.min()) / (mid.max() - mid.min()), atol=1e-6)


def test_sample_names_are_only_bundled_samples(tmp_path):
    name = list_samples()[0]
    (tmp_path / "secret_mri.png").write_bytes(png_bytes((gradient() * 2).astype(np.uint8)))
    (tmp_path / "secret_pet.png").write_bytes(png_bytes((gradient() * 3).astype(np.uint8)))
    outside = str(tmp_path / "secret")
    for bad in (outside, f"../sample_data/{name}", f"{name}/../{name}", f"./{name}", name + " ", name.upper(),
                "", "x" * 5000, None, 3, ["a"]):
        with pytest.raises(KeyError, match="unknown sample pair"):
            sample_paths(bad)
        with pytest.raises(KeyError):
            load_sample(bad)
    assert sample_paths(name)[0].name == f"{name}_mri.png"


def test_hdf5_bombs_are_refused_or_left_unread():
    from fusion.saliency import load_hdf5

    def refuse(data, match):
        with pytest.raises(ValueError, match=match):
            load_hdf5(data, max_band_bytes=2**31, name="x.h5", max_pixels=2**20)

    maps, chunk = bomb_files.h5_map_bomb(), bomb_files.h5_chunk_bomb()  # 20000 x 20000 maps; one 128 MB chunk
    assert len(maps) + len(chunk) < 300_000
    assert peak_growth_mb(lambda: refuse(maps, "20000 x 20000, outside 1 to 1,048,576")) < 40
    assert peak_growth_mb(lambda: refuse(chunk, "chunks of")) < 40
    data = bomb_files.h5_band_bomb()  # 2 x 240 MB of zeros in 140 kB
    opened = []
    assert peak_growth_mb(lambda: opened.append(load_hdf5(data, max_band_bytes=2**31))) < 40
    assert opened[0].band_a is None and opened[0].guidance_a.shape == (64, 64)
