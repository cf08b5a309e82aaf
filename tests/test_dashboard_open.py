"""Opening a dense result from an HDF5 file in the dashboard (backend.open_hdf5), without a browser."""
import h5py
import numpy as np
import pytest
import torch

import fusion
from dashboard import backend
from dashboard.config import Config
from fusion.saliency import save_hdf5
from fusion.serving import SaliencyService


@pytest.fixture
def written(tmp_path):
    """A weighted-average dense result on a small pair, as `python -m fusion saliency` writes it."""
    threads = torch.get_num_threads()
    svc = SaliencyService(cache_dir=tmp_path / "elsewhere")
    rng = np.random.default_rng(3)
    pair_id = svc.put_pair(rng.random((20, 24)), rng.random((20, 24)))
    save_hdf5(svc.dense("weighted-average", pair_id), tmp_path / "wa.h5")
    backend.configure(Config(cache_dir=str(tmp_path / "server")))
    yield tmp_path / "wa.h5", pair_id
    torch.set_num_threads(threads)


def test_a_file_opens_its_pair_and_installs_its_maps(written):
    path, pair_id = written
    opened = backend.open_hdf5(path.read_bytes(), "wa.h5")
    assert opened == {"pair_id": pair_id, "model": "weighted-average", "installed": True, "problem": None}
    maps = backend.dense_maps("weighted-average", pair_id)
    np.testing.assert_allclose(maps["mri_share"], 0.5)
    assert backend.service().computed["dense"] == 0  # served, not recomputed


def test_a_file_of_other_weights_or_an_unknown_model_opens_only_its_pair(written):
    path, pair_id = written
    with h5py.File(path, "r+") as f:
        f.attrs["weights_hash"] = "0" * 32
    opened = backend.open_hdf5(path.read_bytes(), "wa.h5")
    assert opened["pair_id"] == pair_id and not opened["installed"] and "other weights" in opened["problem"]
    assert backend.dense_maps("weighted-average", pair_id) is None
    backend.pair_arrays(pair_id)  # the pair is stored
    with h5py.File(path, "r+") as f:
        f.attrs["model"] = "no-such-model"
    opened = backend.open_hdf5(path.read_bytes(), "wa.h5")
    assert not opened["installed"] and "'no-such-model' is not registered here" in opened["problem"]


def test_a_version_1_file_needs_its_pair_on_the_server(written):
    path, pair_id = written
    with h5py.File(path, "r+") as f:
        a, b = f["pair/a"][()], f["pair/b"][()]
        del f["pair"]
        f.attrs["format_version"] = 1
    with pytest.raises(fusion.InvalidInput, match="older file .* upload the two images first"):
        backend.open_hdf5(path.read_bytes(), "old.h5")
    assert backend.service().put_pair(a, b) == pair_id  # the images uploaded first
    assert backend.open_hdf5(path.read_bytes(), "old.h5")["installed"]


@pytest.mark.parametrize("data, message", [(b"", "not a readable HDF5 file"),
                                           (b"\x89HDF\r\n\x1a\n" + b"\xff" * 64, "not a readable HDF5 file")])
def test_bad_bytes_are_refused_with_the_file_name(written, data, message):
    with pytest.raises(fusion.InvalidInput, match=f"^bad.h5: {message}"):
        backend.open_hdf5(data, "bad.h5")
