"""fusion.report (``python -m fusion report``) and fusion.quality: the HTML file, its numbers, the cache."""
import argparse
import math
import re
import shutil

import numpy as np
import pytest

from fusion import metrics, quality
from fusion.data import load_sample, sample_paths
from fusion.errors import InvalidInput
from fusion.report import add_report_parser, run_report, summary_rows
from fusion.serving import SaliencyService

MODELS = ["weighted-average", "funfusean"]
SAMPLE = "coronal-100"


def parse(*argv):
    parser = argparse.ArgumentParser()
    add_report_parser(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(["report", *argv])


def cells(text: str, model: str) -> list[str]:
    """The cells of the first table row of ``model``."""
    row = re.search(rf'<tr><td class="l">{re.escape(model)}</td>(.*?)</tr>', text)
    assert row, f"no row for {model}"
    return re.findall(r"<td[^>]*>(.*?)</td>", row.group(1))


def test_quality_is_cached_under_its_own_versioned_key(tmp_path):
    svc = SaliencyService(cache_dir=tmp_path)
    pair = load_sample(SAMPLE)
    pair_id = svc.put_pair(pair.mri, pair.pet)
    row = quality.quality_row(svc, "weighted-average", pair_id)
    expected = metrics.evaluate(np.clip(svc.fuse("weighted-average", pair_id), 0, 1), *pair)
    assert {k: row[k] for k in metrics.METRICS} == expected and row["error"] is None
    assert math.isnan(row["mean_mri_share"])  # no dense result yet
    key = quality.quality_key(svc, "metrics", "weighted-average", pair_id)
    assert key.startswith(f"fusion-quality/v{quality.QUALITY_VERSION}/") and key in svc.cache
    fused_before = svc.computed["fuse"]
    assert quality.model_metrics(svc, "weighted-average", pair_id) == expected
    assert svc.computed["fuse"] == fused_before
    dense = svc.dense("weighted-average", pair_id)
    row = quality.quality_row(svc, "weighted-average", pair_id, threshold=0.2)
    assert row["mean_mri_share"] == pytest.approx(
        metrics.saliency_summary(dense.mri_share, pair.mri > 0.2)["mean_mri_share"])
    assert quality.quality_row(svc, "funfusean", pair_id, compute=False)["error"] == "not computed yet"
    svc.close()


def test_one_sample_report(tmp_path, capsys):
    out = tmp_path / "report.html"
    args = parse("--sample", SAMPLE, "--models", *MODELS, "--out", str(out), "--cache-dir", str(tmp_path / "c"))
    assert args.func is run_report and run_report(args) == 0
    text = out.read_text()
    assert "<script src" not in text and "Plotly.newPlot" in text  # plotly.js inline: opens offline
    assert text.count("Plotly.newPlot") == len(MODELS)
    assert "rerun with --dense" in text and "MRI share, brain mask" not in text
    pair = load_sample(SAMPLE)
    svc = SaliencyService(cache_dir=tmp_path / "c")
    pair_id = svc.put_pair(pair.mri, pair.pet)
    for m in MODELS:
        expected = metrics.evaluate(np.clip(svc.fuse(m, pair_id), 0, 1), *pair)
        shown = cells(text, m)
        assert [float(v) for v in shown[:10]] == pytest.approx([expected[k] for k in metrics.METRICS], rel=1e-3)
        assert shown[10:12] == ["n/a", "n/a"]
    svc.close()
    assert text.count('class="best"') >= 10  # every metric column has a best model marked

    run_report(parse("--sample", SAMPLE, "--models", "weighted-average", "--dense", "--out", str(out),
                     "--cache-dir", str(tmp_path / "c")))
    text = out.read_text()
    assert "MRI share, brain mask" in text and "rerun with --dense" not in text
    share = cells(text, "weighted-average")[10]
    assert 0.0 <= float(share) <= 1.0


def test_pair_files_report(tmp_path):
    mri, pet = sample_paths(SAMPLE)
    out = tmp_path / "r.html"
    run_report(parse("--pair", str(mri), str(pet), "--models", "weighted-average", "--out", str(out),
                     "--cache-dir", str(tmp_path / "c")))
    assert f"{mri.name} + {pet.name}" in out.read_text()


def test_folder_report_means_and_rows(tmp_path, capsys):
    folder = tmp_path / "pairs"
    folder.mkdir()
    names = ["axial-095", "sagittal-070"]
    for name in names:
        for src in sample_paths(name):
            shutil.copy(src, folder / src.name)
    (folder / "lonely_mri.png").write_bytes(sample_paths(names[0])[0].read_bytes())  # no PET: skipped
    out = tmp_path / "folder.html"
    run_report(parse("--pairs", str(folder), "--models", *MODELS, "--out", str(out), "--cache-dir",
                     str(tmp_path / "c")))
    assert "report" in capsys.readouterr().err  # the tqdm bar
    text = out.read_text()
    assert "over 2 pairs" in text and "lonely" not in text
    for name in names:
        for m in MODELS:
            assert re.search(rf'<td class="l">{name}</td><td class="l">{m}</td>', text)
    # the mean and SD shown are those of the per-pair values
    svc = SaliencyService(cache_dir=tmp_path / "c")
    rows = []
    for name in names:
        pair = load_sample(name)
        pid = svc.put_pair(pair.mri, pair.pet)
        rows += [{"pair": name, **quality.quality_row(svc, m, pid)} for m in MODELS]
    svc.close()
    s = summary_rows(rows, MODELS)[0]
    values = [r["SSIM"] for r in rows if r["model"] == MODELS[0]]
    assert s["SSIM"] == pytest.approx(np.mean(values)) and s["SSIM sd"] == pytest.approx(np.std(values, ddof=1))
    assert f"{s['SSIM']:.4g} ± {s['SSIM sd']:.4g}" in text


def test_bad_sources(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(InvalidInput, match="no NAME_mri"):
        run_report(parse("--pairs", str(tmp_path / "empty"), "--out", str(tmp_path / "x.html"),
                         "--cache-dir", str(tmp_path / "c")))
    with pytest.raises(InvalidInput, match="unknown sample"):
        run_report(parse("--sample", "../etc", "--out", str(tmp_path / "x.html"), "--cache-dir", str(tmp_path / "c")))
    with pytest.raises(SystemExit):
        parse("--sample", SAMPLE, "--pairs", str(tmp_path))  # one source only
