"""Figure builders and region statistics, as pure functions."""
import io

import numpy as np
import plotly.graph_objects as go
from PIL import Image

from dashboard import figures, stats


def test_histograms_share_one_axis_range():
    share = {"a": np.full((4, 4), 0.9), "b": np.linspace(0, 1, 16).reshape(4, 4)}
    hists = {m: stats.histogram(s, None, bins=10) for m, s in share.items()}
    summaries = {m: stats.summarise(s, None) for m, s in share.items()}
    fig = figures.share_histograms(hists, summaries, "whole image")
    assert len([t for t in fig.data if isinstance(t, go.Bar)]) == 2
    assert fig.layout.xaxis.range == (0, 1) and fig.layout.xaxis2.range == (0, 1)
    assert fig.layout.yaxis.range == fig.layout.yaxis2.range
    assert fig.layout.yaxis.range[1] >= 1.0  # all of model a's pixels fall in one bin
    assert "100% MRI-dominated" in fig.layout.annotations[0].text


def test_empty_states_say_why():
    fig = figures.share_histograms({}, {}, "brain mask")
    assert "No whole-image results" in fig.layout.annotations[0].text
    assert "scatter" in figures.guidance_scatter({}).layout.annotations[0].text


def test_scatter_carries_pixel_indices_and_a_hovered_marker_per_model():
    idx = np.arange(5)
    fig = figures.guidance_scatter({"a": (idx * 1.0, idx * 2.0, idx), "b": (idx, idx, idx)})
    assert list(fig.data[0].customdata) == list(idx)
    assert fig.layout.xaxis2.matches == "x"  # one G_MRI axis range for every model
    # the browser finds each model's marker by its meta and moves it (assets/fs_hover.js)
    assert [t.meta for t in fig.data] == [None, {"hovered": "a"}, None, {"hovered": "b"}]
    assert fig.data[1].x == (None,) and fig.data[3].y == (None,)


def test_subsample_is_reproducible_and_bounded():
    idx = np.arange(1000)
    a, b = figures.subsample(idx, 100), figures.subsample(idx, 100)
    assert len(a) == 100 and np.array_equal(a, b) and np.all(np.diff(a) > 0)
    assert len(figures.subsample(idx[:10], 100)) == 10


def test_sheet_png_has_a_tile_per_cell():
    tile = np.zeros((8, 8, 3), np.uint8)
    data = figures.sheet_png(["m1", "m2"], [("fused", [tile, None]), ("J", [tile, tile])], title="t", tile=32)
    image = Image.open(io.BytesIO(data))
    assert image.format == "PNG" and image.width > 2 * 32 and image.height > 2 * 32


def test_region_masks():
    box = stats.region_mask({"kind": "box", "points": [[5, 1], [2, 3]]}, (8, 8))
    assert box.sum() == 4 * 3 and box[2:6, 1:4].all()
    lasso = stats.region_mask({"kind": "lasso", "points": [[0, 0], [0, 7], [7, 7], [7, 0]]}, (8, 8))
    assert lasso.all()
    pixels = stats.region_mask({"kind": "pixels", "indices": [0, 9, 999]}, (8, 8))
    assert pixels.sum() == 2 and pixels[1, 1]
    assert stats.region_mask(None, (8, 8)) is None


def test_summary_and_csv():
    share = np.array([[0.2, 0.8], [0.9, np.nan]])
    mask = np.array([[True, True], [False, True]])
    assert stats.summarise(share, mask) == {"pixels": 2, "mean_share": 0.5, "mri_dominated": 0.5}
    assert stats.summarise(share, np.zeros_like(mask))["pixels"] == 0
    rows = stats.region_table({"m": share}, {"whole image": None, "box": mask})
    text = stats.table_csv(rows)
    assert text.splitlines()[0] == "model,region,pixels,mean_share,mri_dominated"
    assert text.splitlines()[1].startswith("m,whole image,3,")
    assert stats.brain_mask(np.array([0.0, 0.5])).tolist() == [False, True]
