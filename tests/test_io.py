"""Loading image pairs, and refusing everything that cannot be fused."""
import gzip
import io

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
    assert len(names) >= 5 and {n.split("-")[0] for n in names} == {"axial", "coronal", "sagittal"}
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
    red, green = 0.2989 * 200, 0.5870 * 100
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
