"""Training from the command line: a short run, its model card, and an exact resume."""
import json

import pytest
import torch

import fusion
from fusion.__main__ import main


def weights(path):
    return torch.load(path, weights_only=True)


def train_args(out, steps, *extra):
    return ["train", "--model", "deepfuse", "--data", "samples", "--out", str(out), "--steps", str(steps),
            "--crop", "32", "--val-every", "2", "--seed", "3", *extra]


def test_short_training_run_writes_a_complete_card(tmp_path, capsys):
    assert main(train_args(tmp_path, 4)) == 0
    card = json.loads((tmp_path / "deepfuse.json").read_text())
    assert card["steps"] == 4 and card["seed"] == 3
    assert card["hyper_parameters"]["lr"] == 2e-4 and card["loss"]["gs"] == 0.497
    assert [h["step"] for h in card["history"]] == [2, 4]
    held_out = card["held_out_quality"]
    assert set(held_out["model"]) == {"loss", "ssim_mri", "ssim_pet"}
    assert "weighted_average_baseline" in held_out
    assert card["command"].startswith("python -m fusion train")
    model = fusion.create_model("deepfuse", checkpoint=tmp_path / "deepfuse.pt")
    assert not model.training
    assert "held-out loss" in capsys.readouterr().out


def test_resume_continues_exactly(tmp_path):
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    assert main(train_args(straight, 4)) == 0
    assert main(train_args(resumed, 4, "--stop-after", "2")) == 0
    assert torch.load(resumed / "deepfuse.train.pt", weights_only=True)["step"] == 2
    assert main(train_args(resumed, 4, "--resume", str(resumed / "deepfuse.train.pt"))) == 0
    a, b = weights(straight / "deepfuse.pt"), weights(resumed / "deepfuse.pt")
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=1e-5, atol=1e-6)


def test_frozen_batchnorm_leg_keeps_statistics_and_resumes_exactly(tmp_path):
    first, straight, resumed = tmp_path / "first", tmp_path / "straight", tmp_path / "resumed"
    assert main(train_args(first, 2)) == 0
    state = first / "deepfuse.train.pt"
    assert main(train_args(straight, 6, "--resume", str(state), "--freeze-batchnorm")) == 0
    card = json.loads((straight / "deepfuse.json").read_text())
    assert card["hyper_parameters"]["batchnorm_frozen_from_step"] == 2
    assert card["hyper_parameters"]["batchnorm_recalibration_batches"] == 0
    frozen = weights(straight / "deepfuse.train.pt")["model"]
    final = weights(straight / "deepfuse.pt")
    stats = [k for k in final if k.endswith(("running_mean", "running_var"))]
    assert stats
    for key in stats:  # trained against, saved unchanged
        torch.testing.assert_close(final[key], frozen[key], rtol=0, atol=0)
    assert any(not torch.equal(final[k], weights(first / "deepfuse.pt")[k]) for k in final if k.endswith("weight"))
    # a frozen leg interrupted and resumed gives the same weights
    assert main(train_args(resumed, 6, "--resume", str(state), "--freeze-batchnorm", "--stop-after", "2")) == 0
    assert main(train_args(resumed, 6, "--resume", str(resumed / "deepfuse.train.pt"), "--freeze-batchnorm")) == 0
    again = weights(resumed / "deepfuse.pt")
    for key in final:
        torch.testing.assert_close(again[key], final[key], rtol=1e-5, atol=1e-6)


def test_init_fine_tunes_from_a_checkpoint_and_records_it(tmp_path, capsys):
    first, tuned = tmp_path / "first", tmp_path / "tuned"
    assert main(train_args(first, 2)) == 0
    start = first / "deepfuse.pt"
    # --stop-after 0: the fine-tuning run ends before its first step, so it must hold the given weights
    assert main(train_args(tuned, 4, "--init", str(start), "--stop-after", "0", "--lr", "1e-9")) == 0
    unchanged, given = weights(tuned / "deepfuse.train.pt")["model"], weights(start)
    for key in given:
        torch.testing.assert_close(unchanged[key], given[key], rtol=0, atol=0)
    assert main(train_args(tuned, 4, "--resume", str(tuned / "deepfuse.train.pt"))) == 0
    card = json.loads((tuned / "deepfuse.json").read_text())
    earlier = json.loads((first / "deepfuse.json").read_text())
    assert card["initialised_from"]["checkpoint"] == str(start)  # carried through the resumed leg
    assert card["initialised_from"]["sha256"] == earlier["sha256"]
    assert card["initialised_from"]["command"] == earlier["command"] and card["steps"] == 4
    with pytest.raises(SystemExit):
        main(train_args(tuned, 4, "--init", str(start), "--resume", str(tuned / "deepfuse.train.pt")))
    assert "not allowed with argument" in capsys.readouterr().err


def test_training_a_parameter_free_model_is_refused(tmp_path, capsys):
    try:
        main(["train", "--model", "weighted-average", "--data", "samples", "--out", str(tmp_path), "--steps", "1"])
    except ValueError as exc:
        assert "no trainable parameters" in str(exc)
    else:
        raise AssertionError("training weighted-average should fail")


def test_cli_fuse_and_errors(tmp_path, capsys):
    from fusion.data import list_samples, sample_paths

    mri, pet = sample_paths(list_samples()[0])
    assert main(["fuse", "--model", "weighted-average", str(mri), str(pet), "--out", str(tmp_path / "f.png")]) == 0
    assert (tmp_path / "f.png").stat().st_size > 0
    assert main(["fuse", "--model", "nope", str(mri), str(pet), "--out", str(tmp_path / "g.png")]) == 2
    assert "unknown model" in capsys.readouterr().err
    (tmp_path / "bad.png").write_bytes(b"garbage")
    assert main(["fuse", "--model", "weighted-average", str(tmp_path / "bad.png"), str(pet),
                 "--out", str(tmp_path / "h.png")]) == 2
    assert "not a readable image" in capsys.readouterr().err
