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
    assert client.get(f"{api.ROUTE}?pair=nope&row=1&col=1").status_code == 404
