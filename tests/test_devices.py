"""The device setting of the command line, the service and the dashboard."""
import pytest
import torch

import fusion
from fusion.devices import pick_device
from fusion.serving import SaliencyService


def test_auto_is_the_gpu_when_there_is_one():
    assert pick_device("auto") == torch.device("cuda" if torch.cuda.is_available() else "cpu")
    assert pick_device("cpu") == pick_device(torch.device("cpu")) == torch.device("cpu")


@pytest.mark.parametrize("spec, message", [("gpu", "unknown device 'gpu'"), ("cuda:banana", "unknown device")])
def test_unknown_devices_are_refused_with_a_message(spec, message):
    with pytest.raises(fusion.InvalidInput, match=message):
        pick_device(spec)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on a machine without a GPU")
def test_a_gpu_that_is_not_there_is_refused_with_a_message(tmp_path):
    with pytest.raises(fusion.InvalidInput, match="sees no CUDA GPU"):
        SaliencyService(cache_dir=tmp_path, device="cuda")


def test_the_command_line_says_which_device_is_wrong(tmp_path, capsys):
    from fusion.__main__ import main

    code = main(["saliency", "--model", "weighted-average", "--sample", "axial-095", "--device", "gpu",
                 "--out", str(tmp_path / "x.h5"), "--cache-dir", str(tmp_path / "cache"), "--quiet"])
    assert code == 2 and "unknown device 'gpu'" in capsys.readouterr().err
    assert not (tmp_path / "x.h5").exists()
