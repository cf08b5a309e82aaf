"""The battery every registered model passes (parametrised over the registry)."""
import numpy as np
import pytest
import torch

import fusion
from fusion.models.registry import default_checkpoint_path

MODELS = fusion.list_models()


def fresh(name):
    torch.manual_seed(0)
    return fusion.create_model(name, checkpoint=None)


def rand_pair(n, h, w, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 1, h, w, generator=g), torch.rand(n, 1, h, w, generator=g)


def test_the_five_methods_are_registered():
    assert {"weighted-average", "funfusean", "masknet", "deepfuse", "deeppedestrian"} <= set(MODELS)


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("shape", [(1, 32, 32), (2, 31, 45), (3, 17, 9)])
def test_shape_any_size_and_batch(name, shape):
    a, b = rand_pair(*shape)
    out = fresh(name)(a, b)
    assert out.shape == a.shape
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("name", MODELS)
def test_eval_mode_is_deterministic_and_batch_independent(name):
    model = fresh(name)
    assert not model.training
    a, b = rand_pair(3, 24, 20)
    with torch.no_grad():
        full = model(a, b)
        again = model(a, b)
        single = model(a[1:2], b[1:2])
    torch.testing.assert_close(full, again, rtol=0, atol=0)
    torch.testing.assert_close(full[1:2], single, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", MODELS)
def test_gradient_reaches_both_inputs(name):
    model = fresh(name)
    a, b = rand_pair(1, 24, 24)
    a.requires_grad_(True)
    b.requires_grad_(True)
    model(a, b).sum().backward()
    assert a.grad.abs().sum() > 0
    assert b.grad.abs().sum() > 0


@pytest.mark.parametrize("name", MODELS)
def test_checkpoint_round_trip(name, tmp_path):
    from fusion.checkpoints import save_checkpoint

    model = fresh(name)
    card = save_checkpoint(model, tmp_path / f"{name}.pt", {"model": name})
    assert len(card["sha256"]) == 64
    torch.manual_seed(123)  # a different fresh init, overwritten by the checkpoint
    loaded = fusion.create_model(name, checkpoint=tmp_path / f"{name}.pt")
    a, b = rand_pair(1, 20, 20)
    with torch.no_grad():
        torch.testing.assert_close(loaded(a, b), model(a, b))


@pytest.mark.parametrize("name", [n for n in MODELS if default_checkpoint_path(n) is not None])
def test_bundled_checkpoint_and_card(name):
    from fusion.checkpoints import read_card

    path = default_checkpoint_path(name)
    model = fusion.create_model(name)  # verifies sha256 against the card
    card = read_card(path)
    for key in ("architecture", "training_data", "loss", "hyper_parameters", "steps", "seed", "wall_time_s",
                "final_train_loss", "final_validation", "held_out_quality", "sha256", "command"):
        assert key in card, key
    assert card["architecture"]["parameters"] == sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("name", [n for n in MODELS if default_checkpoint_path(n) is not None])
def test_bundled_checkpoint_matches_or_beats_weighted_average_on_held_out_pairs(name):
    """Recomputed here, not read from the card: the paper's loss on the bundled sample pairs the card
    names (samples bundled after the checkpoint was trained are not in its card)."""
    from fusion.checkpoints import read_card
    from fusion.train import RECIPES, held_out_quality

    card = read_card(default_checkpoint_path(name))["held_out_quality"]
    quality = held_out_quality(fusion.create_model(name), RECIPES[name].weights, names=card["pairs"])
    assert quality["model"]["loss"] == pytest.approx(card["model"]["loss"], abs=2e-4)  # the card is honest
    assert quality["model"]["loss"] <= quality["weighted_average_baseline"]["loss"]


def test_weighted_average_weight():
    model = fusion.create_model("weighted-average", w=0.3)
    a, b = torch.ones(1, 1, 8, 8), torch.zeros(1, 1, 8, 8)
    torch.testing.assert_close(model(a, b), torch.full_like(a, 0.3))
    with pytest.raises(ValueError, match="w must lie in"):
        fusion.create_model("weighted-average", w=1.5)


def test_adaptive_average_handles_zero_over_zero():
    model = fusion.create_model("adaptive-average")
    a = torch.tensor([[[[0.0, 0.2, 1.0]]]], requires_grad=True)
    b = torch.tensor([[[[0.0, 0.6, 0.0]]]], requires_grad=True)
    out = model(a, b)
    torch.testing.assert_close(out.detach(), torch.tensor([[[[0.0, 0.5, 1.0]]]]))
    out.sum().backward()
    assert torch.isfinite(a.grad).all() and torch.isfinite(b.grad).all()
    assert a.grad[0, 0, 0, 0] == 0.5 and b.grad[0, 0, 0, 0] == 0.5


def test_unknown_model_lists_the_known_ones():
    with pytest.raises(fusion.UnknownModel, match="known models: .*funfusean"):
        fusion.create_model("no-such-net")


def test_tampered_checkpoint_is_refused(tmp_path):
    from fusion.checkpoints import save_checkpoint

    save_checkpoint(fresh("deepfuse"), tmp_path / "m.pt", {"model": "deepfuse"})
    data = bytearray((tmp_path / "m.pt").read_bytes())
    data[-100] ^= 0xFF
    (tmp_path / "m.pt").write_bytes(bytes(data))
    with pytest.raises(fusion.InvalidCheckpoint, match="does not match its model card"):
        fusion.create_model("deepfuse", checkpoint=tmp_path / "m.pt")


class _Exploit:
    def __reduce__(self):
        import os

        return (os.system, ("touch /tmp/fusion-pwned",))


@pytest.mark.parametrize("payload", ["whole_model", "exploit"])
def test_malicious_or_whole_model_pickle_is_refused(tmp_path, payload):
    import os

    obj = fresh("deepfuse") if payload == "whole_model" else {"model": _Exploit()}
    torch.save(obj, tmp_path / "evil.pt")
    if os.path.exists("/tmp/fusion-pwned"):
        os.remove("/tmp/fusion-pwned")
    with pytest.raises(fusion.InvalidCheckpoint, match="refused"):
        fusion.create_model("deepfuse", checkpoint=tmp_path / "evil.pt")
    assert not os.path.exists("/tmp/fusion-pwned")


def test_checkpoint_of_another_model_does_not_fit(tmp_path):
    from fusion.checkpoints import save_checkpoint

    save_checkpoint(fresh("deepfuse"), tmp_path / "m.pt", {"model": "deepfuse"})
    with pytest.raises(fusion.InvalidCheckpoint, match="does not fit"):
        fusion.create_model("masknet", checkpoint=tmp_path / "m.pt")


def test_missing_checkpoint(tmp_path):
    with pytest.raises(fusion.InvalidCheckpoint, match="does not exist"):
        fusion.create_model("masknet", checkpoint=tmp_path / "nope.pt")


PLUGIN = '''
import torch
from torch import nn
import fusion

@fusion.register_model("user-max")
class UserMax(nn.Module):
    def __init__(self):
        super().__init__()
        self.scale = nn.Parameter(torch.ones(1))

    def forward(self, a, b):
        return self.scale * torch.maximum(a, b)
'''


def test_user_model_from_a_plugin_file(tmp_path, monkeypatch):
    plugin = tmp_path / "my_models.py"
    plugin.write_text(PLUGIN)
    monkeypatch.setenv("FUSION_PLUGINS", str(plugin))
    try:
        assert "user-max" in fusion.list_models()
        with pytest.warns(UserWarning, match="no bundled checkpoint"):
            model = fusion.create_model("user-max")
        a, b = rand_pair(1, 10, 12)
        torch.testing.assert_close(model(a, b), torch.maximum(a, b))
    finally:
        monkeypatch.delenv("FUSION_PLUGINS")
        fusion.models.unregister_model("user-max")
    assert "user-max" not in fusion.list_models()


def test_broken_plugin_gives_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("FUSION_PLUGINS", str(tmp_path / "missing.py"))
    with pytest.raises(ImportError, match="could not load fusion plugin"):
        fusion.list_models()


def test_fused_sample_is_in_unit_range_for_trained_models():
    from fusion.data import list_samples, load_sample

    a, b = load_sample(list_samples()[0])
    ta, tb = torch.from_numpy(a)[None, None], torch.from_numpy(b)[None, None]
    for name in MODELS:
        with torch.no_grad():
            out = fusion.create_model(name)(ta, tb).numpy()
        assert np.isfinite(out).all()
        assert -0.2 <= out.min() and out.max() <= 1.2, name
