"""Cohorts: every model on every pair of a folder, one HDF5 each, a CSV, resumable."""
from __future__ import annotations

import csv
import subprocess
import sys

import numpy as np
from PIL import Image

from fusion.cohort import result_path, run_cohort
from fusion.data import load_sample
from fusion.saliency import load_hdf5
from fusion.serving import SaliencyService

MODELS = ["weighted-average", "funfusean"]


def write_pairs(directory, names=("alpha", "beta")):
    directory.mkdir()
    for k, name in enumerate(names):
        pair = load_sample("head-axial-090")
        for kind, image in (("mri", pair.mri), ("pet", pair.pet)):
            crop = image[50 + 8 * k:50 + 8 * k + 40, 60:92]
            Image.fromarray(np.round(crop * 255).astype(np.uint8)).save(directory / f"{name}_{kind}.png")
    (directory / "notes.txt").write_text("not a pair")
    return directory


def test_cohort_writes_every_result_and_resumes(tmp_path):
    pairs = write_pairs(tmp_path / "pairs")
    out = tmp_path / "out"
    service = SaliencyService(cache_dir=tmp_path / "cache")
    seen = []
    rows = run_cohort(service, MODELS, pairs, out, workers=1, progress=lambda done, total: seen.append((done, total)))
    assert [(r["pair"], r["model"]) for r in rows] == [(p, m) for p in ("alpha", "beta") for m in MODELS]
    assert all(not r["error"] and 0 <= r["mean_mri_share"] <= 1 for r in rows)
    assert [d for d, _ in seen] == sorted(d for d, _ in seen) and seen[-1][0] == seen[-1][1] == 4 * 40 * 32
    dense = load_hdf5(result_path(out, "beta", "funfusean"))
    assert dense.shape == (40, 32)
    with open(out / "statistics.csv") as handle:
        table = list(csv.DictReader(handle))
    assert len(table) == 4 and float(table[1]["mean_mri_share"]) == rows[1]["mean_mri_share"]

    # Resume: a fresh cache (nothing cached) and one result missing: only that one is computed again.
    result_path(out, "alpha", "funfusean").unlink()
    again = SaliencyService(cache_dir=tmp_path / "cache-2")
    rows_again = run_cohort(again, MODELS, pairs, out, workers=1)
    assert again.computed["dense"] == 1 and result_path(out, "alpha", "funfusean").exists()
    np.testing.assert_allclose(rows_again[1]["mean_mri_share"], rows[1]["mean_mri_share"], rtol=1e-6)
    assert not list(out.glob("*.part"))


def test_cohort_command_line(tmp_path):
    pairs = write_pairs(tmp_path / "pairs", names=("gamma",))
    out = tmp_path / "out"
    done = subprocess.run([sys.executable, "-m", "fusion", "saliency", "--models", *MODELS, "--pairs", str(pairs),
                           "--out-dir", str(out), "--workers", "2", "--cache-dir", str(tmp_path / "cache"), "--quiet"],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    assert "wrote 2 results" in done.stdout and (out / "statistics.csv").exists()
    assert result_path(out, "gamma", "funfusean").exists()
    bad = subprocess.run([sys.executable, "-m", "fusion", "saliency", "--models", "nope", "--pairs", str(pairs),
                          "--out-dir", str(out)], capture_output=True, text=True, timeout=120)
    assert bad.returncode != 0 and "unknown model 'nope'" in bad.stderr and "Traceback" not in bad.stderr
