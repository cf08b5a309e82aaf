"""HDF5 export/import of dense Jacobians and the `python -m fusion saliency` command."""
from __future__ import annotations

import h5py
import numpy as np
import pytest
from saliency_helpers import Dilated, MeanSubtract, build, pair

from fusion.__main__ import main
from fusion.data import list_samples
from fusion.saliency import DenseJacobian, dense_jacobian, load_hdf5


@pytest.mark.parametrize("keep_band", [True, False])
def test_hdf5_round_trip(tmp_path, keep_band):
    model = build(Dilated)
    dense = dense_jacobian(model, *pair(20, 17, seed=5), keep_band=keep_band)
    dense.meta = {"model": "dilated", "weights_hash": "ab" * 16, "pair_id": "cd" * 16, "method_version": "1"}
    path = tmp_path / "out" / "d.h5"
    dense.to_hdf5(path)
    back = DenseJacobian.from_hdf5(path)
    for name in ("guidance_a", "guidance_b", "influence_a", "influence_b", "mri_share", "fused"):
        np.testing.assert_array_equal(getattr(back, name), getattr(dense, name))
    assert back.method == dense.method and back.field == dense.field and back.meta == dense.meta
    assert back.receptive_field == 13
    if keep_band:
        np.testing.assert_array_equal(back.band_a, dense.band_a)
        for r, c in [(0, 0), (19, 16), (9, 3)]:
            np.testing.assert_array_equal(back.row(r, c)[1], dense.row(r, c)[1])
    else:
        assert back.band_a is None
    with h5py.File(path) as f:
        assert "band/a" in f if keep_band else "band" not in f
        assert "band[r, c, i, j]" in f.attrs["layout"] and f.attrs["format_version"] == 1
        if keep_band:
            assert f["band/a"].compression == "gzip" and f["band/a"].chunks is not None
    assert not list(path.parent.glob(".*.tmp"))  # written then renamed


def test_full_image_result_round_trip(tmp_path):
    dense = dense_jacobian(build(MeanSubtract), *pair(9, 8))
    dense.to_hdf5(tmp_path / "g.h5")
    back = load_hdf5(tmp_path / "g.h5")
    assert back.method == "full-image" and back.reason == dense.reason and back.receptive_field == 0
    np.testing.assert_array_equal(back.influence_b, dense.influence_b)


def test_foreign_file_is_refused(tmp_path):
    with h5py.File(tmp_path / "x.h5", "w") as f:
        f["a"] = np.zeros(3)
    with pytest.raises(ValueError, match="not a"):
        load_hdf5(tmp_path / "x.h5")
    (tmp_path / "y.h5").write_text("hello")
    with pytest.raises(ValueError, match="not a readable"):
        load_hdf5(tmp_path / "y.h5")


def test_cli_saliency_on_a_bundled_sample(tmp_path, capsys):
    sample = list_samples()[0]
    out = tmp_path / "s.h5"
    code = main(["saliency", "--model", "weighted-average", "--sample", sample, "--out", str(out),
                 "--cache-dir", str(tmp_path / "cache"), "--quiet"])
    assert code == 0 and "method coloured" in capsys.readouterr().out
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
