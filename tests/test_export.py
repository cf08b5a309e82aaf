"""HDF5 export/import of dense Jacobians and the `python -m fusion saliency` command."""
from __future__ import annotations

import json

import h5py
import numpy as np
import pytest
import torch
from saliency_helpers import Dilated, MeanSubtract, build, pair

from fusion.__main__ import main
from fusion.data import list_samples
from fusion.saliency import Method, dense_jacobian, load_hdf5, save_hdf5


@pytest.mark.parametrize("keep_band", [True, False])
def test_hdf5_round_trip(tmp_path, keep_band):
    model = build(Dilated)
    dense = dense_jacobian(model, *pair(20, 17, seed=5), keep_band=keep_band)
    dense.meta = {"model": "dilated", "weights_hash": "ab" * 16, "pair_id": "cd" * 16, "method_version": "1"}
    path = tmp_path / "out" / "d.h5"
    save_hdf5(dense, path)
    back = load_hdf5(path)
    for name in ("guidance_a", "guidance_b", "influence_a", "influence_b", "mri_share", "fused"):
        np.testing.assert_array_equal(getattr(back, name), getattr(dense, name))
    assert back.method == dense.method and back.field == dense.field and back.meta == dense.meta
    assert back.receptive_field == 13
    for got, sent in zip(back.inputs, dense.inputs, strict=True):  # the pair travels with the result
        np.testing.assert_array_equal(got, np.float32(sent))
    if keep_band:
        np.testing.assert_array_equal(back.band_a, dense.band_a)
        for r, c in [(0, 0), (19, 16), (9, 3)]:
            np.testing.assert_array_equal(back.row(r, c)[1], dense.row(r, c)[1])
    else:
        assert back.band_a is None
    with h5py.File(path) as f:
        assert "band/a" in f if keep_band else "band" not in f
        assert "band[r, c, i, j]" in f.attrs["layout"] and f.attrs["format_version"] == 2 and "pair/a" in f
        if keep_band:
            assert f["band/a"].compression == "gzip" and f["band/a"].chunks is not None
    assert not list(path.parent.glob(".*.tmp"))  # written then renamed


def test_full_image_result_round_trip(tmp_path):
    dense = dense_jacobian(build(MeanSubtract), *pair(9, 8))
    save_hdf5(dense, tmp_path / "g.h5")
    back = load_hdf5(tmp_path / "g.h5")
    assert back.method == Method.FULL_IMAGE and back.reason == dense.reason and back.receptive_field == 0
    np.testing.assert_array_equal(back.influence_b, dense.influence_b)


def test_foreign_file_is_refused(tmp_path):
    with h5py.File(tmp_path / "x.h5", "w") as f:
        f["a"] = np.zeros(3)
    with pytest.raises(ValueError, match="not a"):
        load_hdf5(tmp_path / "x.h5")
    (tmp_path / "y.h5").write_text("hello")
    with pytest.raises(ValueError, match="not a readable"):
        load_hdf5(tmp_path / "y.h5")


@pytest.fixture
def written(tmp_path):
    """A valid file (maps, pair and band) to damage in the tests below."""
    dense = dense_jacobian(build(Dilated), *pair(12, 10, seed=2))
    dense.meta = {"model": "dilated", "weights_hash": "ab" * 16, "pair_id": "cd" * 16, "method_version": "1"}
    save_hdf5(dense, tmp_path / "d.h5")
    return tmp_path / "d.h5"


def test_bytes_and_version_1_files_load(written):
    back = load_hdf5(written.read_bytes())
    assert back.inputs is not None and back.band_a is not None
    with h5py.File(written, "r+") as f:  # a version 1 file had no pair
        del f["pair"]
        f.attrs["format_version"] = 1
    old = load_hdf5(written)
    assert old.inputs is None and old.meta == back.meta
    np.testing.assert_array_equal(old.guidance_a, back.guidance_a)


def write_method_version_1(path, dense, method: str = "crop") -> None:
    """``dense`` as a file of method version 1 (before ``Method``), written with h5py alone: the former
    name ``method`` and no band."""
    with h5py.File(path, "w") as f:
        f.attrs.update(format="fusion-saliency dense Jacobian", format_version=2, layout="(version 1)",
                       method=method, reason="", field=json.dumps(dense.field.__dict__),
                       receptive_field=dense.receptive_field, model="dilated", weights_hash="ab" * 16,
                       pair_id="cd" * 16, method_version="1")
        for name in ("guidance_a", "guidance_b", "influence_a", "influence_b", "fused"):
            f[f"maps/{name}"] = getattr(dense, name)
        f["maps/mri_share"] = dense.mri_share
        for name, array in zip("ab", dense.inputs, strict=True):
            f[f"pair/{name}"] = np.float32(array)


@pytest.mark.parametrize("former, now", [("crop", Method.CROPS), ("crops", Method.CROPS),
                                         ("coloured", Method.COLOURED), ("full-image", Method.FULL_IMAGE)])
def test_files_with_former_method_names_load(tmp_path, former, now):
    dense = dense_jacobian(build(Dilated), *pair(12, 10, seed=3), keep_band=False)
    write_method_version_1(tmp_path / "old.h5", dense, former)
    back = load_hdf5(tmp_path / "old.h5")
    assert back.method is now and back.meta["method_version"] == "1" and back.band_a is None
    np.testing.assert_array_equal(back.influence_a, dense.influence_a)
    save_hdf5(back, tmp_path / "new.h5")  # written again under today's name
    with h5py.File(tmp_path / "new.h5") as f:
        assert f.attrs["method"] == now.value


def test_a_band_over_the_limit_is_not_read(written):
    back = load_hdf5(written, max_band_bytes=1000)
    assert back.band_a is None and back.band_b is None and back.inputs is not None


def _external_storage(f, tmp_path):
    np.zeros((12, 10), np.float32).tofile(tmp_path / "raw.bin")
    del f["maps/fused"]
    f["maps"].create_dataset("fused", (12, 10), np.float32, external=[(str(tmp_path / "raw.bin"), 0, 480)])


def _external_link(f, tmp_path):
    with h5py.File(tmp_path / "other.h5", "w") as g:
        g["x"] = np.zeros((12, 10), np.float32)
    del f["pair/a"]
    f["pair/a"] = h5py.ExternalLink(str(tmp_path / "other.h5"), "/x")


def _replace(path, value):
    def change(f, tmp_path):
        del f[path]
        f[path] = value
    return change


def _attr(key, value):
    def change(f, tmp_path):
        f.attrs[key] = value
    return change


@pytest.mark.parametrize("change, message", [
    (_external_storage, "outside the file"),
    (_external_link, "link to somewhere else"),
    (_replace("maps/guidance_a", h5py.SoftLink("/maps/fused")), "link to somewhere else"),
    (_replace("maps/influence_a", np.full((12, 10), np.nan, np.float32)), "NaN or infinite"),
    (_replace("maps/influence_b", np.zeros((12, 11), np.float32)), "expected (12, 10)"),
    (_replace("maps/guidance_b", np.zeros((12, 10), np.int32)), "float dataset"),
    (_replace("pair/b", np.zeros((12, 10, 2), np.float32)), "2-D float dataset"),
    (_replace("band/a", np.zeros((12, 10, 3, 3), np.float32)), "expected (12, 10, 13, 13)"),
    (lambda f, tmp_path: f.__delitem__("maps/fused"), "/maps/fused is missing"),
    (_attr("format_version", 3), "newer than this library"),
    (_attr("format", "something else"), "not a fusion-saliency"),
    (_attr("field", '{"up": -4, "down": 1, "left": 1, "right": 1}'), "not a receptive field"),
    (_attr("field", '{"up": 1, "down": 1, "left": 1, "right": 1, "evil": 1}'), "not a receptive field"),
    (_attr("field", "not json"), "not a receptive field"),
    (_attr("method", "magic"), "unknown method"),
    (_attr("method", Method.DENSE_CACHE.value), "unknown method 'dense-cache'"),  # a hover's, never a file's
])
def test_hostile_or_inconsistent_files_are_refused(written, tmp_path, change, message):
    with h5py.File(written, "r+") as f:
        change(f, tmp_path)
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")) as info:
        load_hdf5(written)
    assert str(info.value).startswith(str(written))


def test_huge_maps_are_refused_before_reading(tmp_path):
    with h5py.File(tmp_path / "big.h5", "w") as f:  # 64 k x 64 k, declared only (a compressed bomb)
        f.attrs.update(format="fusion-saliency dense Jacobian", format_version=2)
        f.create_dataset("maps/guidance_a", (65536, 65536), np.float32, chunks=(256, 256), compression="gzip")
    with pytest.raises(ValueError, match="outside 1 to"):
        load_hdf5(tmp_path / "big.h5")


def test_truncated_and_foreign_bytes_are_refused(written):
    data = written.read_bytes()
    for damaged in (data[: len(data) // 2], data[:100], b"", b"\x89HDF\r\n\x1a\n" + b"\0" * 50, b"PK\x03\x04 zip"):
        with pytest.raises(ValueError, match="uploaded file: not a readable HDF5 file"):
            load_hdf5(damaged)


def test_cli_saliency_on_a_bundled_sample(tmp_path, capsys):
    sample = list_samples()[0]
    out = tmp_path / "s.h5"
    code = main(["saliency", "--model", "weighted-average", "--sample", sample, "--out", str(out),
                 "--cache-dir", str(tmp_path / "cache"), "--quiet"])
    path = Method.COLOURED if torch.cuda.is_available() else Method.CROPS  # --device auto: a GPU keeps the colours
    assert code == 0 and f"method {path}" in capsys.readouterr().out
    back = load_hdf5(out)
    np.testing.assert_allclose(back.guidance_a, 0.5)
    assert back.meta["model"] == "weighted-average" and len(back.meta["pair_id"]) == 32


def test_cli_friendly_errors(tmp_path, capsys):
    code = main(["saliency", "--model", "weighted-average", "--sample", "no-such-pair", "--out",
                 str(tmp_path / "x.h5"), "--cache-dir", str(tmp_path / "cache"), "--quiet"])
    assert code == 2 and "unknown sample pair" in capsys.readouterr().err
    code = main(["saliency", "--model", "no-such-model", "--sample", list_samples()[0], "--out",
                 str(tmp_path / "x.h5"), "--cache-dir", str(tmp_path / "cache"), "--quiet"])
    assert code == 2 and "unknown model" in capsys.readouterr().err
    code = main(["saliency", "--model", "weighted-average", "--pair", str(tmp_path / "missing.png"),
                 str(tmp_path / "missing2.png"), "--out", str(tmp_path / "x.h5"), "--quiet"])
    assert code == 2 and "no such file" in capsys.readouterr().err
