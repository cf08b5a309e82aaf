"""The hover endpoint: what one selected pixel sends to the page (weighted average: exact values known)."""
import pytest
import torch

from dashboard import api, backend
from dashboard.config import Config


@pytest.fixture
def client(tmp_path):
    threads = torch.get_num_threads()
    backend.configure(Config(cache_dir=str(tmp_path)))
    import dash

    app = dash.Dash(__name__)
    app.layout = dash.html.Div()
    api.register(app)
    yield app.server.test_client()
    torch.set_num_threads(threads)


def test_pixel_payload_of_the_weighted_average(client):
    pair = backend.resolve_pair(backend.default_pair_key())
    out = api.pixel_payload(pair["id"], ["weighted-average"], 40, 200, shared=True)
    wa = out["models"]["weighted-average"]
    assert (out["row"], out["col"]) == (40, 200)
    assert wa["dmri"] == pytest.approx(0.5) and wa["dpet"] == pytest.approx(0.5) and wa["share"] == pytest.approx(0.5)
    assert wa["window"] == [40, 41, 200, 201]  # receptive field 1: the window is the pixel itself
    assert wa["mark"] == {"top": 0.0, "left": 0.0, "height": 100.0, "width": 100.0}
    assert wa["jmri"].startswith("data:image/png;base64,")
    assert [text for _, text in wa["ticks"]["jmri"]] == ["-0.5", "0", "0.5"]
    full = api.pixel_payload(pair["id"], ["weighted-average"], 300, -5, window="full")
    assert (full["row"], full["col"]) == (pair["h"] - 1, 0) and full["models"]["weighted-average"]["mark"] is None


def test_endpoint_answers_json_and_refuses_bad_requests(client):
    pair = backend.resolve_pair(backend.default_pair_key())
    ok = client.get(f"{api.ROUTE}?pair={pair['id']}&models=weighted-average&row=3&col=4&jac=magnitude&seq=7")
    assert ok.status_code == 200 and ok.json["seq"] == "7" and ok.json["models"]["weighted-average"]["dmri"] == 0.5
    assert [t for _, t in ok.json["models"]["weighted-average"]["ticks"]["jpet"]] == ["0", "0.5"]
    assert client.get(f"{api.ROUTE}?pair={pair['id']}&row=x&col=1").status_code == 400
    assert client.get(f"{api.ROUTE}?pair={'0' * 32}&row=1&col=1").status_code == 404  # well formed, unknown


def hover(client, **params):
    from urllib.parse import urlencode

    answer = client.get(f"{api.ROUTE}?{urlencode(params, doseq=True)}")
    assert answer.is_json and (answer.status_code == 200 or set(answer.json) == {"error"})
    return answer.status_code, answer.json


def test_every_bad_hover_parameter_is_a_400_with_a_message(client):
    pair = backend.resolve_pair(backend.default_pair_key())["id"]
    good = {"pair": pair, "models": "weighted-average", "row": "3", "col": "4"}
    cases = [  # (changed parameters, part of the message)
        ({"row": None}, "missing parameter 'row'"), ({"pair": None}, "missing parameter 'pair'"),
        ({"row": "x"}, "whole number"), ({"col": "1.5"}, "whole number"), ({"row": "9" * 11}, "longer than"),
        ({"row": "٣"}, "whole number"), ({"row": "1_0"}, "whole number"), ({"col": ""}, "whole number"),
        ({"row": ["1", "2"]}, "given 2 times"),
        ({"models": "weighted-average,nope"}, "unknown model 'nope'"),
        ({"models": ",".join(f"m{i}" for i in range(9))}, "unknown models 'm0', 'm1', 'm2', 'm3', 'm4' and 4 more"),
        ({"models": "x" * 1001}, "longer than 1000"), ({"models": ",".join(["weighted-average"] * 300)}, "longer"),
        ({"pair": "sample:../../etc/passwd"}, "not a pair key"), ({"pair": "/etc/passwd"}, "not a pair key"),
        ({"pair": "sample:" + "a" * 200}, "longer than"), ({"pair": pair.upper()}, "not a pair key"),
        ({"jac": "rainbow"}, "'jac' must be one of signed, magnitude"), ({"win": "x"}, "'win' must be one of"),
        ({"shared": "yes"}, "'shared' must be 0 or 1"), ({"gamma": "nan"}, "'gamma' must be a number"),
        ({"gamma": "1e999"}, "'gamma' must be a number"), ({"seq": "<script>"}, "'seq' must be a whole number"),
        ({f"x{i}": "1" for i in range(20)}, "too many parameters"),
    ]
    for change, message in cases:
        params = {k: v for k, v in {**good, **change}.items() if v is not None}
        status, body = hover(client, **params)
        assert status == 400 and message in body["error"], (change, body)
    for key in ("sample:nope", "sample:..", "sample:axial-072_mri.png", "f" * 32):
        status, body = hover(client, **{**good, "pair": key})
        assert status == 404 and ("unknown sample pair" in body["error"] or "unknown or expired" in body["error"])


def test_models_are_unique_registered_names_within_the_limit(client, monkeypatch):
    import fusion

    pair = backend.resolve_pair(backend.default_pair_key())["id"]
    status, body = hover(client, pair=pair, row=2, col=3, models=",".join(["weighted-average"] * 50))
    assert status == 200 and list(body["models"]) == ["weighted-average"]  # duplicates dropped, once computed
    backend.configure(Config(cache_dir=backend.config().cache_dir, max_models=2))
    names = fusion.list_models()[:3]
    status, body = hover(client, pair=pair, row=2, col=3, models=",".join(names))
    assert status == 400 and body["error"] == "bad request: 3 models asked for; at most 2 per request"
    status, body = hover(client, pair=pair, row=-9, col=10**8, models="weighted-average," * 2, win="full")
    assert status == 200 and (body["row"], body["col"]) == (0, 255)  # clamped into the image
