"""The dashboard's handle on the saliency service, one per process.

Everything shared between processes (pairs, dense results) lives in the
service's disk cache; this module only keeps a process-local service object and
small read-through memories of recent answers, so that re-colouring (gamma,
ranges) never recomputes anything.
"""
from __future__ import annotations

import functools
import os
import re
import tempfile
import threading
from pathlib import Path

import numpy as np

import fusion
from fusion import data
from fusion.serving import LRU

from .config import Config, from_env

_lock = threading.Lock()
_service = None
_pid = None
_config: Config | None = None


def configure(config: Config) -> None:
    """Set the configuration the service is created with (call before the first request)."""
    global _config, _service
    set_threads(config.web_threads)
    with _lock:
        if _service is not None and _pid == os.getpid():
            _service.close()  # its hover worker processes, if any
        _config, _service = config, None
        _memory.clear()
        _dense_maps.clear()
    model_info.cache_clear()
    sample_label.cache_clear()


def set_threads(n: int) -> None:
    """Torch threads of this process (the web process answers small crops: 1 is fastest)."""
    import torch

    if torch.get_num_threads() != n:
        torch.set_num_threads(n)


def config() -> Config:
    return _config or from_env()


def service():
    """This process's SaliencyService (re-created after a fork: background jobs get their own)."""
    global _service, _pid
    with _lock:
        if _service is None or _pid != os.getpid():
            from fusion.serving import SaliencyService

            cfg = config()
            _service = SaliencyService(cache_dir=cfg.cache_dir, device=cfg.device, size_limit_bytes=cfg.cache_bytes,
                                       hover_processes=cfg.hover_processes, planning="background")
            _pid = os.getpid()
            _memory.clear()
            _dense_maps.clear()
        return _service


_memory = LRU(64)          # fused images and pairs


# ------------------------------------------------------------------ pairs
SAMPLE_PREFIX = "sample:"


#: The bundled sample the page opens on: a whole head (T2 MRI + FDG PET in a hot colour map).
DEFAULT_SAMPLE = "head-axial-090"


def default_pair_key(cfg: Config | None = None) -> str:
    """The pair shown first: $FUSION_DASH_PAIR, else ``DEFAULT_SAMPLE``, else the middle axial sample."""
    cfg = cfg or config()
    samples = data.list_samples()
    for name in (cfg.default_pair, DEFAULT_SAMPLE):
        if name and name in samples:
            return SAMPLE_PREFIX + name
    axial = [s for s in samples if s.startswith("axial")]
    return SAMPLE_PREFIX + (axial[len(axial) // 2] if axial else samples[0])


#: What a pair key may look like (checked before any lookup): a bundled sample's name, or a pair id.
PAIR_KEY = re.compile(r"sample:[A-Za-z0-9_.-]{1,64}|[0-9a-f]{16,64}")


def resolve_pair(key: str) -> dict:
    """A pair key (``sample:<name>`` or an uploaded pair's id) -> {"key", "id", "label", "h", "w"}.

    Raises fusion.InvalidInput (unknown upload id) or KeyError (unknown sample, or not a pair key).
    A sample name must be one of ``data.list_samples()``: no path is built from a request value.
    """
    if not isinstance(key, str) or not PAIR_KEY.fullmatch(key):
        raise KeyError("not a pair key (a bundled sample or an uploaded pair's id)")
    cached = _memory.get(("pair", key))
    if cached is not None:
        return cached
    svc = service()
    if key.startswith(SAMPLE_PREFIX):
        name = key[len(SAMPLE_PREFIX):]
        pair_id, label = put_pair(data.load_sample(name)), f"sample {name}"
    else:
        pair_id, label = key, f"uploaded pair {key[:8]}"
    a, _ = svc.get_pair(pair_id)
    return _memory.put(("pair", key), {"key": key, "id": pair_id, "label": label, "colour": is_colour(pair_id),
                                       "h": int(a.shape[0]), "w": int(a.shape[1])})


def put_pair(pair) -> str:
    """Store a ``fusion.io.Pair`` (a colour PET keeps its chroma and Y range) in the service; returns its id."""
    return service().put_pair(pair.mri, pair.pet, pet_chroma=pair.pet_chroma, pet_range=pair.pet_range)


@functools.lru_cache(maxsize=256)
def sample_label(name: str) -> str:
    """The picker's label of a bundled sample: its name, and whether its PET is in colour."""
    return f"sample {name}" + (" · colour PET" if data.load_sample(name).is_colour else "")


def pair_colour(pair_id: str):
    """(pet_chroma (H, W, 2), pet_range (lo, hi)) of a pair with a colour PET; None for a grey PET."""
    hit = _memory.get(("colour", pair_id))
    return (hit if hit is not None else _memory.put(("colour", pair_id), (service().pair_colour(pair_id),)))[0]


def is_colour(pair_id: str) -> bool:
    return pair_colour(pair_id) is not None


def pet_colour(pair_id: str) -> np.ndarray | None:
    """The PET input in its own colours, (H, W, 3) RGB in [0, 1]; None for a grey PET."""
    if not is_colour(pair_id):
        return None
    hit = _memory.get(("pet-rgb", pair_id))
    return hit if hit is not None else _memory.put(("pet-rgb", pair_id), service().pet_colour(pair_id))


def pair_arrays(pair_id: str) -> tuple[np.ndarray, np.ndarray]:
    cached = _memory.get(("arrays", pair_id))
    return cached if cached is not None else _memory.put(("arrays", pair_id), service().get_pair(pair_id))


def load_upload(data: bytes, name: str):
    """One uploaded image, checked against the server's limits (file size, pixels from the header)."""
    cfg = config()
    return fusion.load_image(data, name, max_pixels=cfg.max_pixels, max_bytes=int(cfg.max_upload_mb * 2**20))


def put_uploaded_pair(mri: bytes, mri_name: str, pet: bytes, pet_name: str) -> str:
    """Validate two uploaded files with the fusion core and store the pair (a colour PET keeps its
    chroma); returns its id. Raises fusion.InvalidInput with a message meant for the user.
    """
    cfg = config()
    pair = fusion.load_pair(mri, pet, names=(mri_name, pet_name), max_pixels=cfg.max_pixels,
                            max_bytes=int(cfg.max_upload_mb * 2**20))
    return put_pair(pair)


def dense_hdf5(name: str, pair_id: str) -> bytes | None:
    """The model's cached dense result on the pair as the bytes of an HDF5 file
    (``fusion.saliency.save_hdf5``), None when it is not cached."""
    from fusion.saliency import save_hdf5

    result = service().cached_dense(name, pair_id)
    if result is None:
        return None
    with tempfile.TemporaryDirectory() as tmp:
        return save_hdf5(result, Path(tmp) / "dense.h5").read_bytes()


def open_hdf5(data: bytes, filename: str) -> dict:
    """Open an uploaded dense result (``python -m fusion saliency --out``, or the ⤓ download).

    Its pair is stored (or, for a format version 1 file without images, found on this
    server) and its maps are installed in the service's cache for its model when the
    weights match. Returns {"pair_id", "model", "installed", "problem"}; raises
    fusion.InvalidInput, with a message for the user, when the file cannot be opened at all.
    """
    from fusion.saliency import load_hdf5

    svc = service()
    try:
        dense = load_hdf5(data, max_band_bytes=svc.max_band_bytes, name=filename, max_pixels=config().max_pixels)
    except ValueError as exc:
        raise fusion.InvalidInput(str(exc)) from None
    model, pair_id = dense.meta.get("model", ""), dense.meta.get("pair_id", "")
    if isinstance(dense.inputs, fusion.Pair):  # a colour PET keeps its chroma (and so its pair id)
        pair_id = put_pair(dense.inputs)
    elif dense.inputs is not None:
        pair_id = svc.put_pair(*dense.inputs)
    else:
        try:
            svc.get_pair(pair_id)
        except fusion.InvalidInput:
            raise fusion.InvalidInput(f"{filename}: this older file (format version 1) holds no input images and "
                                      "its pair is not on this server: upload the two images first, then the file "
                                      "again") from None
    problem = None
    if model not in fusion.list_models():
        problem = f"its model {model!r} is not registered here"
    else:
        try:
            svc.put_dense(model, pair_id, dense)
        except Exception as exc:  # noqa: BLE001 - other weights, or a model that fails to load
            problem = str(exc)
    return {"pair_id": pair_id, "model": model, "installed": problem is None, "problem": problem}


# ------------------------------------------------------------------ models
@functools.lru_cache(maxsize=64)
def model_info(name: str) -> dict:
    """The service's model info (receptive field, method, card...), remembered per process."""
    return service().model_info(name)


def rf_offsets(info: dict) -> tuple[int, int, int, int] | None:
    """(up, down, left, right) reach of a model's receptive field, for the hover box; None if unknown/global."""
    rf = info.get("field") or info.get("receptive_field")
    if rf is None:
        return None
    if all(hasattr(rf, k) for k in ("up", "down", "left", "right")):
        return None if getattr(rf, "local", True) is False else (rf.up, rf.down, rf.left, rf.right)
    if isinstance(rf, dict) and {"up", "down", "left", "right"} <= rf.keys():
        return None if rf.get("local") is False else (rf["up"], rf["down"], rf["left"], rf["right"])
    if isinstance(rf, (int, float)) and rf > 0:
        half = int(rf) // 2
        return (half, int(rf) - 1 - half, half, int(rf) - 1 - half)
    return None


def fused(name: str, pair_id: str) -> np.ndarray:
    """The network's output, (H, W) Y on its [0, 1] scale."""
    key = ("fused", name, pair_id)
    cached = _memory.get(key)
    return cached if cached is not None else _memory.put(key, service().fuse(name, pair_id))


def fused_colour(name: str, pair_id: str) -> np.ndarray:
    """The fused image in colour, (H, W, 3) RGB in [0, 1]: Y in the PET's range, PET's Cb/Cr (grey PET: grey)."""
    key = ("fused-rgb", name, pair_id)
    cached = _memory.get(key)
    return cached if cached is not None else _memory.put(key, service().fused_colour(name, pair_id))


def fused_image(name: str, pair_id: str, y_only: bool = False) -> np.ndarray:
    """The fused image as shown: (H, W, 3) RGB for a colour PET unless ``y_only``, else (H, W) Y."""
    return fused(name, pair_id) if y_only or not is_colour(pair_id) else fused_colour(name, pair_id)


def plan_ahead() -> None:
    """A server's start: plan every registered model at the bundled samples' sizes and prepare the hovers of
    the default pair, in the service's low-priority background thread (requests never wait for it)."""
    cfg = config()
    shapes = {tuple(data.load_sample(name).shape) for name in data.list_samples()}
    service().plan_ahead(fusion.list_models(), sorted(shapes))
    default = [m for m in cfg.default_models if m in fusion.list_models()]
    if default:
        prepare_hover(default, resolve_pair(default_pair_key(cfg))["id"])


def prepare_hover(names: list[str], pair_id: str) -> None:
    """Let the service keep the models' forward passes on this pair in the background (fast first hover)."""
    service().prepare_hover(names, pair_id)


def pixels(names: list[str], pair_id: str, row: int, col: int) -> dict:
    """Per-pixel saliency of ``names`` at (row, col) (the service remembers recent pixels,
    so re-colouring is free)."""
    return service().pixel(names, pair_id, row, col)


#: Only the maps the page shows are kept here (a dense result's banded Jacobian can be
#: hundreds of MB; the service keeps that and serves hover rows from it).
DENSE_MAPS = ("guidance_a", "guidance_b", "influence_a", "influence_b", "mri_share")
_dense_maps = LRU(32)


def _reset_after_fork() -> None:
    """Locks held by a parent's request thread at fork time would deadlock a background job."""
    global _lock, _service, _pid
    _lock, _service, _pid = threading.Lock(), None, None
    for memo in (_memory, _dense_maps):
        memo.lock = threading.Lock()
        memo.data.clear()


os.register_at_fork(after_in_child=_reset_after_fork)


def dense_maps(name: str, pair_id: str) -> dict[str, np.ndarray] | None:
    """The whole-image maps of a cached dense result ({name: H x W}), or None if not computed."""
    key = (name, pair_id)
    hit = _dense_maps.get(key)
    if hit is not None:
        return hit
    result = service().cached_dense(name, pair_id)
    if result is None:
        return None
    return _dense_maps.put(key, {m: np.asarray(getattr(result, m)) for m in DENSE_MAPS})


def quality_rows(pair_id: str, models: list[str], threshold: float) -> list[dict]:
    """Fusion quality metrics and saliency numbers per model (``fusion.quality``, cached in the service's disk
    cache: computed once per model and pair, for every process)."""
    from fusion.quality import quality_rows as rows

    return rows(service(), models, pair_id, threshold)


# ------------------------------------------------------------------ cohorts: every bundled sample
def cohort_models(names) -> list[str]:
    """The models a cohort may use of ``names`` (a request value): registered names only, in the registry's
    order, at most ``max_models``. Raises ValueError for anything but a list of texts."""
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise ValueError("the models must be a list of names")
    return [m for m in fusion.list_models() if m in names][:config().max_models]


def cohort_pairs() -> dict[str, str]:
    """{sample name: pair id} of every bundled sample (``data.list_samples``), stored in the service."""
    return {name: resolve_pair(SAMPLE_PREFIX + name)["id"] for name in data.list_samples()}


def cohort_units(models: list[str]) -> list[tuple[str, str, str]]:
    """(sample name, model, pair id) of every bundled sample and model of ``models``, pair by pair."""
    return [(name, m, pair_id) for name, pair_id in cohort_pairs().items() for m in models]


def cohort_cached(models: list[str]) -> tuple[int, int]:
    """(units with their dense result cached, all units) of the cohort of ``models``."""
    svc, units = service(), cohort_units(models)
    return sum(svc.has_dense(m, pair_id) for _, m, pair_id in units), len(units)


def cohort_csv(models: list[str], threshold: float) -> str:
    """The cohort's ``statistics.csv`` (``fusion.cohort``): one row per (sample, model), from the cached dense
    results, over the brain mask MRI > ``threshold``; a unit not cached gets its row with the error
    "not computed" (nothing is computed here)."""
    from fusion.cohort import failed_row, statistics_csv, statistics_row

    svc, rows = service(), []
    for name, m, pair_id in cohort_units(models):
        dense = svc.cached_dense(m, pair_id)
        rows.append(failed_row(name, m, "not computed") if dense is None else
                    statistics_row(name, m, dense, pair_arrays(pair_id)[0], threshold))
    return statistics_csv(rows)
