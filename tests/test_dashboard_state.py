"""URL state: round trip, and tolerance of stale or hand-edited links."""
import os

import pytest

from dashboard import config, state

MODELS = ["weighted-average", "funfusean", "masknet", "deepfuse", "deeppedestrian"]
DEFAULT = state.ViewState(pair="sample:axial-095", models=tuple(MODELS))


def test_round_trip():
    view = state.ViewState(pair="sample:coronal-100", models=("masknet", "funfusean"), pixel=(12, 200),
                           jac="magnitude", range="shared", window="full", gamma_j=0.35, gamma_g=1.8)
    search = state.encode(view)
    assert search.startswith("?pair=sample:coronal-100&models=masknet,funfusean&px=12,200")
    assert state.decode(search, DEFAULT, MODELS) == view


def test_empty_search_gives_the_defaults():
    assert state.decode("", DEFAULT, MODELS) == DEFAULT
    assert state.decode(None, DEFAULT, MODELS) == DEFAULT


def test_garbage_falls_back_per_field():
    view = state.decode("?models=nope,masknet,masknet&px=a,b&jac=rainbow&gj=99&gg=nan&win=rf", DEFAULT, MODELS)
    assert view.models == ("masknet",)
    assert view.pixel is None
    assert view.jac == "signed"
    assert view.gamma_j == state.GAMMA_MAX
    assert view.gamma_g == 1.0


def test_no_models_is_a_valid_state():
    assert state.decode("?models=", DEFAULT, MODELS).models == ()


@pytest.mark.parametrize("raw, expected", [(0.01, 0.1), ("1.234", 1.23), (None, 1.0), ("x", 1.0), (5, 2.0)])
def test_clamp_gamma(raw, expected):
    assert state.clamp_gamma(raw) == expected


def test_config_from_environment():
    cfg = config.from_env({"FUSION_DASH_PORT": "9000", "FUSION_DASH_DEBUG": "1",
                           "FUSION_DASH_MODELS": "masknet, deepfuse", "REDIS_URL": "redis://x"})
    assert (cfg.port, cfg.debug, cfg.default_models, cfg.redis_url) == (9000, True, ("masknet", "deepfuse"), "redis://x")
    assert config.from_env({}).default_models == config.DEFAULT_MODELS
    with pytest.raises(ValueError, match="FUSION_DASH_PORT"):
        config.from_env({"FUSION_DASH_PORT": "eighty"})


def test_hover_processes_come_from_the_environment():
    assert config.from_env({}).hover_processes == config.Config().hover_processes == config.default_hover_processes()
    assert config.default_hover_processes() == (2 if (os.cpu_count() or 1) >= 2 else 0)
    assert config.from_env({"FUSION_HOVER_PROCESSES": "0"}).hover_processes == 0
    assert config.from_env({"FUSION_HOVER_PROCESSES": "2"}).hover_processes == 2
    with pytest.raises(ValueError, match="FUSION_HOVER_PROCESSES"):
        config.from_env({"FUSION_HOVER_PROCESSES": "two"})


def test_device_setting_is_checked_when_read():
    assert config.from_env({"FUSION_DEVICE": "auto"}).device == "auto"
    with pytest.raises(ValueError, match="FUSION_DEVICE: unknown device 'gpu'"):
        config.from_env({"FUSION_DEVICE": "gpu"})


def test_y_only_round_trips_and_is_left_out_when_off():
    on = state.ViewState(pair="sample:axial-095", models=("masknet",), y_only=True)
    assert state.encode(on).endswith("&y=1") and state.decode(state.encode(on), DEFAULT, MODELS) == on
    assert "y=" not in state.encode(DEFAULT)  # links made before the switch read the same
    assert state.decode("?y=maybe", DEFAULT, MODELS).y_only is False
