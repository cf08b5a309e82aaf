"""Whole-image maps of several models on every pair of a folder: one HDF5 per (model, pair) and a CSV.

``python -m fusion saliency --models M1 M2 --pairs DIR --out-dir OUT [--workers N]``. Pairs are
``NAME_mri.EXT`` / ``NAME_pet.EXT`` files (as ``train --data DIR``). Work goes through
``fusion.fanout`` (every core, blocks of rows); a (model, pair) whose HDF5 is already in OUT is
skipped, so an interrupted run resumes where it stopped. ``OUT/statistics.csv`` has one row per
(pair, model): the MRI share's mean and the fraction of MRI-dominated pixels over the brain mask.
"""
from __future__ import annotations

import csv
import os
from pathlib import Path

import numpy as np

from .errors import InvalidInput
from .fanout import run, usable_workers
from .io import load_pair
from .metrics import saliency_summary
from .quality import BRAIN_THRESHOLD
from .report import pair_files
from .saliency import load_hdf5, save_hdf5

#: Columns of ``statistics.csv``.
COLUMNS = ("pair", "model", "mean_mri_share", "mri_dominated", "method", "file", "error")


def result_path(out_dir: Path, pair: str, model: str) -> Path:
    """Where the HDF5 of ``model`` on ``pair`` goes."""
    return Path(out_dir) / f"{pair}__{model}.h5"


def write_atomically(dense, path: Path) -> None:
    """Write the HDF5 beside its final name and rename it: a killed run leaves no half-written result."""
    part = path.with_name(path.name + ".part")
    save_hdf5(dense, part)
    os.replace(part, path)


def run_cohort(service, models: list[str], directory, out_dir, workers: int | None = None,
               threshold: float = BRAIN_THRESHOLD, progress=None) -> list[dict]:
    """Every model on every pair of ``directory``; returns the CSV's rows (also written to OUT/statistics.csv).

    ``progress(done, total)`` in output pixels of the work left at the start.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    pairs = {}
    for name, mri, pet in pair_files(directory):
        try:
            pair = load_pair(mri, pet)
        except InvalidInput as exc:
            raise InvalidInput(f"pair {name}: {exc}") from None
        pairs[name] = (service.put_pair(pair.mri, pair.pet, pair.pet_chroma, pair.pet_range), pair.mri)
    todo = [(model, pair_id) for name, (pair_id, _) in pairs.items() for model in models
            if not result_path(out_dir, name, model).exists()]

    def report(_request, units: dict) -> None:
        if progress is not None:
            progress(sum(u["done"] for u in units.values()), sum(u["total"] for u in units.values()))

    outcome = run(service, todo, workers=workers or usable_workers(), progress=report) if todo else {}
    rows = []
    for name, (pair_id, mri) in pairs.items():
        for model in models:
            path = result_path(out_dir, name, model)
            row = {"pair": name, "model": model, "file": path.name, "error": ""}
            failed = outcome.get((model, pair_id), {}).get("error")
            if failed:
                rows.append({**row, "file": "", "error": failed})
                continue
            if path.exists():
                dense = load_hdf5(path)
            else:  # computed just now (or earlier, into the cache); computed here should the cache have lost it
                dense = service.cached_dense(model, pair_id) or service.dense(model, pair_id)
                write_atomically(dense, path)
            numbers = saliency_summary(dense.mri_share, np.asarray(mri) > threshold)
            rows.append({**row, **numbers, "method": dense.method})
    with open(out_dir / "statistics.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=COLUMNS, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    return rows
