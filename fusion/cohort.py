"""Whole-image maps of several models on every pair of a folder: one HDF5 per (model, pair) and a CSV.

``python -m fusion saliency --models M1 M2 --pairs DIR --out-dir OUT [--workers N]``. Pairs are
``NAME_mri.EXT`` / ``NAME_pet.EXT`` files (as ``train --data DIR``). Work goes through
``fusion.fanout`` (every core, blocks of rows); a (model, pair) whose HDF5 is already in OUT is
skipped, so an interrupted run resumes where it stopped. ``OUT/statistics.csv`` has one row per
(pair, model): the MRI share's mean and the fraction of MRI-dominated pixels over the brain mask
(``statistics_row``; the dashboard's "Cohort statistics (CSV)" is the same table, ``statistics_csv``).
"""
from __future__ import annotations

import csv
import io
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


def statistics_row(pair: str, model: str, dense, mri, threshold: float = BRAIN_THRESHOLD, file: str = "") -> dict:
    """One row of ``statistics.csv`` (keys ``COLUMNS``) from ``model``'s dense result on ``pair``.

    ``mri``: the pair's H x W MRI in [0, 1]; the brain mask is ``mri > threshold``. "mean_mri_share" and
    "mri_dominated" are ``fusion.metrics.saliency_summary`` of ``dense.mri_share`` over that mask (NaN for
    an empty mask); "method" is the dense result's path; "file" where it was written ("" if nowhere).
    """
    numbers = saliency_summary(dense.mri_share, np.asarray(mri) > threshold)
    return {"pair": pair, "model": model, **numbers, "method": str(dense.method), "file": file, "error": ""}


def failed_row(pair: str, model: str, error: str) -> dict:
    """The ``statistics.csv`` row of a (pair, model) without a result: no numbers, and why."""
    return {"pair": pair, "model": model, "mean_mri_share": "", "mri_dominated": "", "method": "", "file": "",
            "error": error}


def statistics_csv(rows: list[dict]) -> str:
    """``rows`` (``statistics_row`` / ``failed_row``) as the text of ``statistics.csv``: a header of ``COLUMNS``."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=COLUMNS, extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


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
            failed = outcome.get((model, pair_id), {}).get("error")
            if failed:
                rows.append(failed_row(name, model, failed))
                continue
            if path.exists():
                dense = load_hdf5(path)
            else:  # computed just now (or earlier, into the cache); computed here should the cache have lost it
                dense = service.cached_dense(model, pair_id) or service.dense(model, pair_id)
                write_atomically(dense, path)
            rows.append(statistics_row(name, model, dense, mri, threshold, file=path.name))
    with open(out_dir / "statistics.csv", "w", newline="") as handle:
        handle.write(statistics_csv(rows))
    return rows
