"""`python -m fusion demo`: the README montage, colour head samples first, a row per chosen sample."""
import numpy as np
import torch
from PIL import Image

import fusion
from fusion.__main__ import DEMO_SAMPLES, main
from fusion.data import list_samples, load_sample

SIDE = 256  # every bundled sample is 256 x 256


def tile(montage: np.ndarray, row: int, col: int) -> np.ndarray:
    return montage[row * SIDE:(row + 1) * SIDE, col * SIDE:(col + 1) * SIDE].astype(int)


def is_grey(rgb: np.ndarray) -> bool:
    return bool((rgb == rgb[..., :1]).all())


def test_default_montage_shows_the_colour_heads_and_two_brain_only_pairs(tmp_path, capsys):
    out = tmp_path / "montage.png"
    assert main(["demo", "--models", "weighted-average", "--out", str(out)]) == 0
    assert f"rows: {', '.join(DEMO_SAMPLES)}" in capsys.readouterr().out
    image = Image.open(out)
    assert image.mode == "RGB" and image.size == (3 * SIDE, len(DEMO_SAMPLES) * SIDE)  # MRI, PET, one model
    montage = np.asarray(image)
    model = fusion.create_model("weighted-average")
    for row, name in enumerate(DEMO_SAMPLES):
        pair = load_sample(name)
        assert is_grey(tile(montage, row, 0))  # the MRI
        assert is_grey(tile(montage, row, 1)) != pair.is_colour and is_grey(tile(montage, row, 2)) != pair.is_colour
        with torch.no_grad():
            fused_y = model(torch.from_numpy(pair.mri)[None, None], torch.from_numpy(pair.pet)[None, None])[0, 0]
        want = np.rint(np.clip(pair.colour_fused(fused_y.numpy()), 0, 1) * 255)
        np.testing.assert_allclose(tile(montage, row, 2), want, atol=1)
    assert sum(load_sample(name).is_colour for name in DEMO_SAMPLES) >= 2  # the README shows colour


def test_samples_option_chooses_rows_and_refuses_unknown_names(tmp_path, capsys):
    out = tmp_path / "two.png"
    assert main(["demo", "--models", "weighted-average", "--samples", "axial-095", "head-axial-075",
                 "--out", str(out)]) == 0
    assert Image.open(out).size == (3 * SIDE, 2 * SIDE)
    montage = np.asarray(Image.open(out))
    assert is_grey(tile(montage, 0, 1)) and not is_grey(tile(montage, 1, 1))
    assert main(["demo", "--models", "weighted-average", "--samples", "all", "--out", str(out)]) == 0
    assert Image.open(out).size == (3 * SIDE, len(list_samples()) * SIDE)
    capsys.readouterr()
    assert main(["demo", "--samples", "../axial-095", "--out", str(tmp_path / "bad.png")]) == 2
    assert "unknown sample pair '../axial-095'" in capsys.readouterr().err
    assert not (tmp_path / "bad.png").exists()
