"""The dashboard's metrics table (dashboard/metrics_table.py): its rows and CSV, and the table in headless Chromium.

Run with ``pytest --headless``. Cheap models and a throw-away cache.
"""
import csv
import io
import math
import time

import numpy as np
import pytest

from dashboard import backend
from dashboard.config import Config
from dashboard.features import metrics as metrics_table
from fusion import metrics

MODELS = ("weighted-average", "funfusean")


@pytest.fixture(scope="module")
def configured(tmp_path_factory):
    backend.configure(Config(cache_dir=str(tmp_path_factory.mktemp("fusion-cache")), default_models=MODELS))
    yield backend.resolve_pair(backend.default_pair_key())["id"]


def test_metrics_rows_are_the_library_numbers(configured):
    pair_id = configured
    rows = metrics_table.metrics_rows(pair_id, MODELS)
    assert [r["model"] for r in rows] == list(MODELS)
    a, b = backend.pair_arrays(pair_id)
    for r in rows:
        expected = metrics.evaluate(np.clip(backend.fused(r["model"], pair_id), 0, 1), a, b)
        assert {k: r[k] for k in metrics.METRICS} == expected and r["error"] is None
        assert math.isnan(r["mean_mri_share"])  # no dense result computed
    backend.service().dense("weighted-average", pair_id)
    r = metrics_table.metrics_rows(pair_id, ["weighted-average"], threshold=0.1)[0]
    share = backend.dense_maps("weighted-average", pair_id)["mri_share"]
    assert r["mean_mri_share"] == pytest.approx(metrics.saliency_summary(share, a > 0.1)["mean_mri_share"])


def test_metrics_csv_and_best_marks(configured):
    rows = metrics_table.metrics_rows(configured, MODELS)
    text = metrics_table.metrics_csv(rows)
    parsed = list(csv.DictReader(io.StringIO(text)))
    assert [p["model"] for p in parsed] == list(MODELS)
    assert float(parsed[0]["SSIM"]) == pytest.approx(rows[0]["SSIM"])
    assert list(parsed[0])[:11] == ["model", *metrics.METRICS]
    data = [{"model": r["model"], **{k: metrics_table.json_number(r[k]) for k in metrics.METRICS}} for r in rows]
    styles = metrics_table.best_styles(data)
    assert len(styles) == len(metrics.METRICS)
    ssim_best = next(s for s in styles if s["if"]["column_id"] == "SSIM")
    assert ssim_best["if"]["filter_query"] == f"{{SSIM}} = {max(d['SSIM'] for d in data)}"
    assert metrics_table.best_styles(data[:1]) == []  # one row: nothing to compare
    assert metrics_table.json_number(math.inf) is None and metrics_table.json_number(math.nan) is None


def test_bad_pair_gives_a_row_with_a_note_not_a_crash(configured):
    gone = metrics_table.metrics_rows("0" * 64, MODELS)  # an unknown (expired) pair id: the service's message
    assert all("unknown or expired" in r["error"] and math.isnan(r["SSIM"]) for r in gone)
    ramp = np.linspace(0, 1, 256, dtype=np.float32).reshape(16, 16)
    tiny = backend.service().put_pair(ramp, ramp.T.copy())
    row = metrics_table.metrics_rows(tiny, ["weighted-average"])[0]
    assert "at least 41" in row["error"] and math.isnan(row["VIF"])
    assert "note" in str(metrics_table.table([row]).columns)


@pytest.mark.browser
def test_table_shows_a_row_per_model_for_the_default_pair(dash_duo, tmp_path):
    import torch

    import app as app_module

    threads = torch.get_num_threads()
    try:
        dash_app = app_module.create_app(Config(cache_dir=str(tmp_path), default_models=MODELS))
        metrics_table.register(dash_app)
        metrics_table.register(dash_app)  # idempotent: wiring it in callbacks.register as well is harmless
        dash_duo.start_server(dash_app)
        selector = "#fs-metrics-datatable td[data-dash-column='model']"
        end = time.time() + 180
        while time.time() < end and len(dash_duo.find_elements(selector)) < len(MODELS):
            time.sleep(0.2)
        shown = [e.text for e in dash_duo.find_elements(selector)]
        assert shown == list(MODELS)
        header = dash_duo.find_element("#fs-metrics-datatable").text
        for name in metrics.METRICS:
            assert f"{name} ↑" in header
        pair_id = backend.resolve_pair(backend.default_pair_key())["id"]
        expected = metrics_table.metrics_rows(pair_id, MODELS)
        ssim_cells = [e.text for e in dash_duo.find_elements("#fs-metrics-datatable td[data-dash-column='SSIM']")]
        assert [float(v) for v in ssim_cells] == pytest.approx([r["SSIM"] for r in expected], rel=1e-3)
        bold = [e for e in dash_duo.find_elements("#fs-metrics-datatable td[data-dash-column='SSIM']")
                if e.value_of_css_property("font-weight") in ("700", "bold")]
        assert len(bold) == 1 and float(bold[0].text) == pytest.approx(max(r["SSIM"] for r in expected), rel=1e-3)
        assert dash_duo.get_logs() == [] or all("fs-metrics" not in str(entry) for entry in dash_duo.get_logs())
    finally:
        torch.set_num_threads(threads)
