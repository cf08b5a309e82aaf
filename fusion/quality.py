"""Fusion quality metrics per (model, pair), cached in a ``SaliencyService``'s disk cache.

Uses only the service's public API (``cache``, ``weights_hash``, ``fuse``, ``get_pair``,
``cached_dense``). Entries are JSON text (never pickles) under keys of their own:

    fusion-quality/v<QUALITY_VERSION>/metrics/<weights hash>/<pair id>
    fusion-quality/v<QUALITY_VERSION>/saliency/<weights hash>/<pair id>/<brain threshold>

The metrics (``fusion.metrics.evaluate``) are of the fused image clipped to [0, 1], as it is
shown and as an 8-bit file would hold it; the saliency numbers (``fusion.metrics.saliency_summary``
over the brain mask MRI > threshold) exist only once the dense result is cached, and are
stored then. Bump ``QUALITY_VERSION`` when a metric's definition changes: old entries are ignored.
"""
from __future__ import annotations

import json
import math

import numpy as np

from .errors import InvalidInput
from .metrics import METRICS, evaluate, saliency_summary

QUALITY_VERSION = "1"
KEY_PREFIX = "fusion-quality"
#: The brain mask: MRI intensity (in [0, 1]) above this (the dashboard's default too).
BRAIN_THRESHOLD = 0.1
#: The two saliency numbers, after the metrics in a row.
SALIENCY_KEYS = ("mean_mri_share", "mri_dominated")


def quality_key(svc, kind: str, name: str, pair_id: str, *parts) -> str:
    """The cache key of one entry (``kind``: "metrics" or "saliency")."""
    return "/".join([KEY_PREFIX, f"v{QUALITY_VERSION}", kind, svc.weights_hash(name), pair_id, *map(str, parts)])


def _read(svc, key: str) -> dict | None:
    text = svc.cache.get(key)
    if not isinstance(text, str):
        return None
    try:
        return json.loads(text)
    except ValueError:
        svc.cache.delete(key)
        return None


def _write(svc, key: str, value: dict) -> None:
    svc.cache.set(key, json.dumps(value))  # NaN and inf travel as JSON's NaN / Infinity


def model_metrics(svc, name: str, pair_id: str, compute: bool = True) -> dict[str, float] | None:
    """``evaluate`` of model ``name``'s fused image on the stored pair (cached); None when not cached and
    not ``compute``. Raises InvalidInput for an unknown pair or images the metrics refuse (too small)."""
    key = quality_key(svc, "metrics", name, pair_id)
    hit = _read(svc, key)
    if hit is not None or not compute:
        return hit
    a, b = svc.get_pair(pair_id)
    fused = np.clip(np.nan_to_num(svc.fuse(name, pair_id), nan=0.0), 0.0, 1.0)
    values = evaluate(fused, a, b)
    _write(svc, key, values)
    return values


def model_saliency(svc, name: str, pair_id: str, threshold: float = BRAIN_THRESHOLD) -> dict[str, float] | None:
    """``saliency_summary`` of the cached dense result's MRI share over the brain mask MRI > ``threshold``
    (cached); None when no dense result is cached."""
    threshold = float(threshold)
    key = quality_key(svc, "saliency", name, pair_id, f"{threshold:g}")
    hit = _read(svc, key)
    if hit is not None:
        return hit
    dense = svc.cached_dense(name, pair_id)
    if dense is None:
        return None
    a, _ = svc.get_pair(pair_id)
    values = saliency_summary(dense.mri_share, np.asarray(a) > threshold)
    _write(svc, key, values)
    return values


def quality_row(svc, name: str, pair_id: str, threshold: float = BRAIN_THRESHOLD, compute: bool = True) -> dict:
    """One table row: {"model", "EN", ..., "PSNR", "mean_mri_share", "mri_dominated", "error"}.

    Metrics not computed (``compute`` False and nothing cached) or refused are NaN, with the
    reason in "error" (None when all is well); saliency numbers are NaN without a dense result.
    """
    row: dict = {"model": name, **{k: math.nan for k in METRICS}, **{k: math.nan for k in SALIENCY_KEYS},
                 "error": None}
    try:
        values = model_metrics(svc, name, pair_id, compute=compute)
        if values is None:
            row["error"] = "not computed yet"
        else:
            row.update(values)
        row.update(model_saliency(svc, name, pair_id, threshold) or {})
    except InvalidInput as exc:
        row["error"] = str(exc)
    return row


def quality_rows(svc, names, pair_id: str, threshold: float = BRAIN_THRESHOLD, compute: bool = True) -> list[dict]:
    """``quality_row`` of each model in ``names``, in that order."""
    return [quality_row(svc, name, pair_id, threshold, compute) for name in names]
