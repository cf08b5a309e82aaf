"""The cached saliency facade shared by the dashboard and the command line.

Everything expensive is stored in a diskcache ``Cache`` (SQLite + files, safe
for several processes: gunicorn workers, background jobs) under deterministic
keys built from content hashes: of the model (class, constructor arguments,
state dict bytes), of the image pair, and of ``METHOD_VERSION``. Each stored
value is ``MAGIC + sha256(payload) + payload`` where the payload is an
``np.savez`` archive (arrays and a JSON header, never pickles); an entry whose
checksum does not match is deleted and recomputed, never served. diskcache
writes a value's file completely before it publishes the key, so readers see
either nothing or a whole entry.

Settings (one place):
    cache_dir         $FUSION_CACHE_DIR or ~/.cache/fusion-saliency (not on NFS: SQLite)
    size_limit_bytes  the cache evicts least recently used entries beyond this
    max_band_bytes    dense results keep their banded Jacobian in the cache up to this size
    hover_memory_bytes  $FUSION_HOVER_MEMORY_MB (default 1024): memory for kept full-image
                      activations, per process (hovers replay them and run only backward)
"""
from __future__ import annotations

import hashlib
import io
import json
import math
import os
import threading
import time
from collections import OrderedDict
from pathlib import Path

import numpy as np
import torch
from torch import nn

from . import create_model
from .background import FIELD, PLAN, PREPARE, BackgroundWork
from .checkpoints import read_card
from .devices import pick_device
from .errors import InvalidInput
from .hover_pool import HoverProcesses
from .io import Pair, check_colour_pair
from .saliency.blocks import DenseBlock, dense_block, merge_blocks
from .saliency.dense import DenseJacobian, dense_jacobian, dense_method
from .saliency.pixel import PixelJacobian, pixel_jacobians, record_windows
from .saliency.receptive_field import (
    Field,
    analyse,
    model_dtype,
    plan,
    remember_field,
    remember_verdict,
    replay_pays,
    run,
    verify_replay,
    verify_shrinking,
)
from .saliency.shrinking import ForwardRecord, Unsupported, record_forward

#: Bump when a change of the algorithms changes stored results: old entries are then ignored.
METHOD_VERSION = "1"
CACHE_ENV = "FUSION_CACHE_DIR"
HOVER_MEMORY_ENV = "FUSION_HOVER_MEMORY_MB"
HOVER_PROCESSES_ENV = "FUSION_HOVER_PROCESSES"
#: Threads computing the pixels of several models at once (each crop runs on one intra-op thread).
HOVER_WORKERS = max(1, min(4, os.cpu_count() or 1))
_MAGIC = b"FSC1"
#: Where one-off planning runs (see ``SaliencyService``).
PLANNING = ("inline", "background", "elsewhere")
#: A call waits at most this long for a field being probed in the background, then takes the full image.
#: A probe costs a fraction of a second per model; the full image at 256 x 256 seconds (many more on a busy
#: machine), so waiting for the probe is the faster exact answer nearly always.
FIELD_WAIT_S = 20.0
#: One process at a time probes a model, or plans it at an image size, under a lease in the shared cache; the
#: lease of a process killed meanwhile expires after this many seconds.
PROBE_LEASE_S, PLAN_LEASE_S = 30, 300

#: One fused pixel's saliency for one model (see ``fusion.saliency.PixelJacobian``):
#: ja, jb (H x W float32), window (top, bottom, left, right; ends exclusive), value, method, reason.
PixelSaliency = PixelJacobian


def default_cache_dir() -> Path:
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "fusion-saliency")


def hover_processes_from_env() -> int:
    """$FUSION_HOVER_PROCESSES: worker processes for hovers of several models (default 0: threads)."""
    text = os.environ.get(HOVER_PROCESSES_ENV, "").strip() or "0"
    if not text.isdigit():
        raise ValueError(f"${HOVER_PROCESSES_ENV} must be a whole number of processes, got {text!r}")
    return int(text)


def hover_memory_from_env() -> int:
    """$FUSION_HOVER_MEMORY_MB in bytes (default 1024 MB; 0 turns kept activations off)."""
    text = os.environ.get(HOVER_MEMORY_ENV, "").strip() or "1024"
    try:
        megabytes = float(text)
    except ValueError:
        raise ValueError(f"${HOVER_MEMORY_ENV} must be a number of megabytes, got {text!r}") from None
    if not megabytes >= 0:
        raise ValueError(f"${HOVER_MEMORY_ENV} must be >= 0, got {text!r}")
    return int(megabytes * 2**20)


# ------------------------------------------------------------------ hashing
def pair_hash(a: np.ndarray, b: np.ndarray, pet_chroma: np.ndarray | None = None,
              pet_range: tuple[float, float] | None = None) -> str:
    """Content hash of a validated pair (shape and float32 bytes of both images; a colour PET's
    chroma and Y range too, so a colour pair and its grey version differ)."""
    digest = hashlib.sha256(f"pair:{a.shape[0]}x{a.shape[1]}".encode())
    for x in (a, b):
        digest.update(np.ascontiguousarray(x, dtype=np.float32).tobytes())
    if pet_chroma is not None:
        lo, hi = pet_range if pet_range is not None else (0.0, 1.0)
        digest.update(f"colour:{float(lo)!r}:{float(hi)!r}".encode())
        digest.update(np.ascontiguousarray(pet_chroma, dtype=np.float32).tobytes())
    return digest.hexdigest()[:32]


def weights_hash(model: nn.Module) -> str:
    """Content hash of a model: class, constructor arguments (its repr) and state-dict bytes."""
    digest = hashlib.sha256(f"{type(model).__module__}.{type(model).__qualname__}\n{model!r}".encode())
    for name, tensor in model.state_dict().items():
        t = tensor.detach().cpu().contiguous()
        digest.update(f"{name}:{t.dtype}:{tuple(t.shape)}".encode())
        digest.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return digest.hexdigest()[:32]


# ------------------------------------------------------------------ checked blobs
def pack(arrays: dict[str, np.ndarray], header: dict) -> bytes:
    """Arrays and a JSON header -> MAGIC + sha256 + npz payload."""
    buf = io.BytesIO()
    np.savez(buf, __header__=np.frombuffer(json.dumps(header).encode(), np.uint8), **arrays)
    payload = buf.getvalue()
    return _MAGIC + hashlib.sha256(payload).digest() + payload


def unpack(blob) -> tuple[dict[str, np.ndarray], dict]:
    """Inverse of ``pack``; raises ValueError for a damaged, partial or foreign entry."""
    if not isinstance(blob, (bytes, bytearray, memoryview)) or bytes(blob[:4]) != _MAGIC:
        raise ValueError("not a fusion-saliency cache entry")
    blob = bytes(blob)
    checksum, payload = blob[4:36], blob[36:]
    if hashlib.sha256(payload).digest() != checksum:
        raise ValueError("checksum mismatch (damaged or partial entry)")
    with np.load(io.BytesIO(payload), allow_pickle=False) as archive:
        arrays = {k: archive[k] for k in archive.files}
    header = json.loads(arrays.pop("__header__").tobytes().decode())
    return arrays, header


class LRU:
    """A small thread-safe in-memory LRU (also the dashboard's per-process memo).

    At most ``size`` entries and, with ``max_bytes``, at most that many bytes
    (as told by each value's ``nbytes``; a value larger than that is not kept).
    """

    def __init__(self, size: int, max_bytes: int | None = None):
        self.size, self.max_bytes, self.data, self.lock = size, max_bytes, OrderedDict(), threading.Lock()

    @property
    def nbytes(self) -> int:
        return sum(v.nbytes for v in self.data.values())

    def get(self, key):
        with self.lock:
            if key not in self.data:
                return None
            self.data.move_to_end(key)
            return self.data[key]

    def put(self, key, value):
        with self.lock:
            if self.max_bytes is not None and value.nbytes > self.max_bytes:
                self.data.pop(key, None)
                return value
            self.data[key] = value
            self.data.move_to_end(key)
            while len(self.data) > self.size or (self.max_bytes is not None and self.nbytes > self.max_bytes):
                self.data.popitem(last=False)
        return value

    def clear(self):
        with self.lock:
            self.data.clear()


class SaliencyService:
    """Cached saliency for the dashboard and the CLI.

    Args:
        cache_dir: directory of the disk cache (default: $FUSION_CACHE_DIR or ~/.cache/fusion-saliency).
        size_limit_bytes: the disk cache's size limit (least recently used entries are evicted).
        device: torch device the models run on ("auto": the GPU if there is one, else the CPU).
        checkpoint: passed to ``fusion.create_model`` ("default": the bundled weights; None: fresh).
        max_band_bytes: largest banded Jacobian (both inputs) stored with a dense result
            (default: a quarter of the size limit); larger ones keep only the maps.
        hover_memory_bytes: memory for kept full-image forward activations (``record_forward``),
            per process (default: $FUSION_HOVER_MEMORY_MB or 1024 MB; 0: none). A hover on a pair
            whose activations are kept runs only the backward half; the least recently used
            are dropped first, and a model whose record alone is larger is hovered without one.
        replay: when hovers replay kept activations: "auto" (where verified and timed faster,
            ``replay_pays``), "always" (wherever verified) or "never".
        hover_processes: worker processes that compute the hovers of several models at once
            (``fusion.hover_pool``; CPU only), default $FUSION_HOVER_PROCESSES or 0: threads.
        planning: where the one-off work of a model at a new image size (probing its field,
            verifying the fast paths, timing the replay, recording window programs) runs:
            "inline" (in the first call that needs it: a library's or command line's choice),
            "background" (a server's: calls answer at once by an exact path, the plain crop
            or the full image, while a low-priority thread of this process plans, one process
            at a time per model and size, sharing the result through the cache; later calls take
            the fast path) or "elsewhere" (answer at once, plan nothing: a hover worker process,
            whose owner plans).
    """

    def __init__(self, cache_dir=None, size_limit_bytes: int = 2**31, device: str = "cpu",
                 checkpoint="default", max_band_bytes: int | None = None, hover_memory_bytes: int | None = None,
                 replay: str = "auto", hover_processes: int | None = None, planning: str = "inline"):
        if replay not in ("auto", "always", "never"):
            raise ValueError(f"replay must be 'auto', 'always' or 'never', got {replay!r}")
        if planning not in PLANNING:
            raise ValueError(f"planning must be one of {', '.join(map(repr, PLANNING))}, got {planning!r}")
        self.planning = planning
        self._background = BackgroundWork()  # planning and preparation
        self._probing = BackgroundWork(name="fusion-probe")  # short, and a first hover may wait for it
        self.replay = replay
        self.cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
        self.size_limit_bytes = int(size_limit_bytes)
        self.device = pick_device(device)
        self.checkpoint = checkpoint
        self.max_band_bytes = self.size_limit_bytes // 4 if max_band_bytes is None else int(max_band_bytes)
        self._cache, self._pid = None, None
        self._lock = threading.RLock()
        self._models: dict[str, nn.Module] = {}
        self._hashes: dict[str, str] = {}
        self._pairs = LRU(8)
        self._colours = LRU(8)  # pair id -> (pet_chroma or None, pet_range)
        self._colour_fused = LRU(16)  # (weights hash, pair id) -> (H, W, 3) RGB
        self._pixels = LRU(256)
        self._dense = LRU(4)
        self._records = LRU(64, hover_memory_from_env() if hover_memory_bytes is None else int(hover_memory_bytes))
        self._record_bytes: dict[tuple, int] = {}  # (weights hash, H, W) -> size of one record
        self._work_locks: dict[tuple, threading.Lock] = {}
        self._plans: dict[tuple, tuple] = {}
        self._fields: dict[str, Field] = {}  # weights hash -> probed field
        self._prepared: set[tuple] = set()  # (weights hash, pair id) whose hover preparation was started
        self._hover_seconds: dict[tuple, float] = {}  # (model, H, W) -> moving average of a hover's time
        self._windows_ready: set[tuple] = set()  # (weights hash, H, W) whose window programs are recorded
        processes = hover_processes_from_env() if hover_processes is None else int(hover_processes)
        self._hover_pool = None
        if processes > 0 and self.device.type == "cpu":
            self._hover_pool = HoverProcesses(processes, {
                "cache_dir": str(self.cache_dir), "size_limit_bytes": self.size_limit_bytes,
                "checkpoint": None if checkpoint is None else str(checkpoint),
                "max_band_bytes": self.max_band_bytes, "hover_memory_bytes": self._records.max_bytes,
                "replay": replay, "planning": "inline" if planning == "inline" else "elsewhere"})
        self._local_only: set[str] = set()  # models whose weights the workers do not have
        #: Hovers running at once in this process (a hover worker process sets 1), as ``replay_pays`` times them.
        self._concurrent_hovers = 2
        #: Pixels of one model computed at once by a hover (a hover worker process sets its lane's batch):
        #: window programs of the interior are recorded for every batch size up to this.
        self._largest_batch = 1
        #: How many times each kind of result was computed here (not served from a cache).
        self.computed: dict[str, int] = {"fuse": 0, "pixel": 0, "dense": 0, "record": 0}

    # -------------------------------------------------------------- cache plumbing
    @property
    def cache(self):
        """The diskcache Cache, (re)opened in this process (connections must not cross a fork)."""
        import diskcache

        if self._cache is None or self._pid != os.getpid():
            self.cache_dir.mkdir(parents=True, exist_ok=True)
            self._cache = diskcache.Cache(str(self.cache_dir), size_limit=self.size_limit_bytes,
                                          eviction_policy="least-recently-used")
            self._pid = os.getpid()
        return self._cache

    def _load(self, key: str):
        """(arrays, header) stored under key, or None; a damaged entry is deleted."""
        blob = self.cache.get(key)
        if blob is None:
            return None
        try:
            return unpack(blob)
        except (ValueError, OSError, KeyError):
            self.cache.delete(key)
            return None

    def _store(self, key: str, arrays: dict[str, np.ndarray], header: dict) -> None:
        self.cache.set(key, pack(arrays, header))

    def _key(self, kind: str, *parts) -> str:
        return "/".join(["fusion-saliency", f"v{METHOD_VERSION}", kind, *map(str, parts)])

    def close(self) -> None:
        """Release the disk cache (reopened at the next use) and stop the hover worker processes for good
        (later hovers run in threads)."""
        pool, self._hover_pool = self._hover_pool, None
        if pool is not None:
            pool.close(final=True)
        self._background.close()
        self._probing.close()
        if self._cache is not None:
            self._cache.close()
            self._cache = None

    # -------------------------------------------------------------- pairs
    def put_pair(self, a, b, pet_chroma=None, pet_range=None) -> str:
        """Validate (``fusion.io.check_colour_pair``) and store a pair; returns its id (hex content hash).

        A colour PET: ``b`` its scaled Y (H, W), ``pet_chroma`` (H, W, 2) Cb/Cr and ``pet_range`` (lo, hi)
        as in ``fusion.io.Pair`` (or ``b`` an (H, W, 3) RGB array); the id hashes the colour too.
        """
        pair = check_colour_pair(a, b, pet_chroma, pet_range)
        a, b = pair
        pair_id = pair_hash(a, b, pair.pet_chroma, pair.pet_range)
        self._pairs.put(pair_id, (a, b))
        self._colours.put(pair_id, (pair.pet_chroma, pair.pet_range))
        key = self._key("pair", pair_id)
        if self._load(key) is None:
            arrays, header = {"a": a, "b": b}, {"pair_id": pair_id}
            if pair.is_colour:
                arrays["pet_chroma"], header["pet_range"] = pair.pet_chroma, list(pair.pet_range)
            self._store(key, arrays, header)
        return pair_id

    def get_pair(self, pair_id: str) -> tuple[np.ndarray, np.ndarray]:
        """The two H x W float32 images of a stored pair; raises InvalidInput for an unknown id."""
        hit = self._pairs.get(pair_id)
        return hit if hit is not None else self._load_pair(pair_id)[0]

    def _load_pair(self, pair_id: str) -> tuple[tuple[np.ndarray, np.ndarray], tuple]:
        """A stored pair read from the disk cache into memory: ((a, b), (pet_chroma or None, pet_range))."""
        entry = self._load(self._key("pair", pair_id)) if isinstance(pair_id, str) else None
        if entry is None:
            raise InvalidInput(f"unknown or expired image pair {pair_id!r}: load or upload the images again")
        arrays, header = entry
        lo, hi = header.get("pet_range", (0.0, 1.0))
        return (self._pairs.put(pair_id, (arrays["a"], arrays["b"])),
                self._colours.put(pair_id, (arrays.get("pet_chroma"), (float(lo), float(hi)))))

    def pair_colour(self, pair_id: str) -> tuple[np.ndarray, tuple[float, float]] | None:
        """(pet_chroma (H, W, 2) float32, pet_range (lo, hi)) of a stored colour pair, None for a grey one;
        raises InvalidInput for an unknown id."""
        hit = self._colours.get(pair_id)
        if hit is None:
            hit = self._load_pair(pair_id)[1]
        return None if hit[0] is None else hit

    def colour_pair(self, pair_id: str) -> Pair:
        """A stored pair with its colour (``fusion.io.Pair``); raises InvalidInput for an unknown id."""
        colour = self.pair_colour(pair_id)
        return Pair(*self.get_pair(pair_id), *(colour or ()))

    def pet_colour(self, pair_id: str) -> np.ndarray:
        """The PET input as (H, W, 3) float32 RGB in [0, 1] (a grey PET: three equal channels)."""
        return self.colour_pair(pair_id).colour_pet()

    # -------------------------------------------------------------- models
    def model(self, name: str) -> nn.Module:
        """The model ``name`` (``fusion.create_model``), built once per process."""
        with self._lock:
            if name not in self._models:
                model = create_model(name, checkpoint=self.checkpoint).to(self.device)
                for p in model.parameters():
                    p.requires_grad_(False)  # saliency needs input gradients only
                self._models[name] = model
                self._hashes[name] = weights_hash(model)
            return self._models[name]

    def weights_hash(self, name: str) -> str:
        self.model(name)
        return self._hashes[name]

    def _known_field(self, name: str) -> Field | None:
        """The model's probed field if this process or the cache knows it (never probes)."""
        weights = self.weights_hash(name)
        field = self._fields.get(weights)
        if field is None:
            entry = self._load(self._key("field", weights))
            if entry is not None:
                field = self._fields[weights] = remember_field(self.model(name), Field(**entry[1]["field"]))
        return field

    def _field(self, name: str) -> Field:
        """The model's probed field, shared through the cache so only one process probes."""
        field = self._known_field(name)
        if field is None:
            field = analyse(self.model(name))
            self._store(self._key("field", self.weights_hash(name)), {}, {"field": field.__dict__})
            self._fields[self.weights_hash(name)] = field
        return field

    def _field_soon(self, name: str) -> Field | None:
        """The field; without inline planning, probed in the background and waited for at most ``FIELD_WAIT_S``
        (None if it is not known by then, or never probed here: planning "elsewhere")."""
        field = self._known_field(name)
        if field is not None or self.planning == "elsewhere":
            return field
        if self.planning == "inline":
            return self._field(name)
        try:
            return self._probe_later(name).result(FIELD_WAIT_S)
        except Exception:  # noqa: BLE001 - not probed in time (or the probe failed): the caller takes the full image
            return None

    def _probe_later(self, name: str):
        """The Future of the model's field, probed in the probing thread (by one process at a time)."""
        lease = ("field", self.weights_hash(name))
        return self._probing.submit(("field", name), FIELD, lambda: self._one_at_a_time(
            lease, PROBE_LEASE_S, lambda: self._known_field(name), lambda: self._field(name)))

    def _plan(self, name: str, height: int, width: int) -> tuple[str, Field, str | None]:
        """("crop" or "full-image", field, reason), the verdict shared through the cache (computed if needed)."""
        memo_key = (self.weights_hash(name), height, width)
        memo = self._plans.get(memo_key)
        if memo is not None:
            return memo
        with self._work_lock(("plan", *memo_key)):  # a second caller waits for the first one's verdict
            if memo_key not in self._plans:
                self._plans[memo_key] = self._verdict(name, height, width)
        return self._plans[memo_key]

    def _known_plan(self, name: str, height: int, width: int) -> tuple[str, Field, str | None] | None:
        """The plan if this process or the cache knows it (never plans)."""
        memo_key = (self.weights_hash(name), height, width)
        memo = self._plans.get(memo_key)
        if memo is not None or self._known_field(name) is None:
            return memo
        entry = self._load(self._key("verdict", memo_key[0], f"{height}x{width}"))
        if entry is None:
            return None
        self._install_verdict(name, height, width, entry[1])
        self._plans[memo_key] = plan(self.model(name), height, width)  # every verdict is installed: no work
        return self._plans[memo_key]

    def _plan_shared(self, name: str, height: int, width: int) -> tuple[str, Field, str | None]:
        """``_plan`` by one process at a time; the others wait for its verdict."""
        return self._one_at_a_time(("plan", self.weights_hash(name), f"{height}x{width}"), PLAN_LEASE_S,
                                   lambda: self._known_plan(name, height, width),
                                   lambda: self._plan(name, height, width))

    def _one_at_a_time(self, lease: tuple, seconds: float, known, compute):
        """``known()`` once it is not None; meanwhile, ``compute()`` by the one process that holds the lease
        (an entry of the shared cache that expires after ``seconds``, should its holder be killed)."""
        key = self._key("lease", *lease)
        while True:
            found = known()
            if found is not None:
                return found
            if self.cache.add(key, os.getpid(), expire=seconds):
                try:
                    return compute()
                finally:
                    self.cache.delete(key)
            time.sleep(0.2)

    def _plan_job(self, name: str, height: int, width: int) -> tuple[str, Field, str | None]:
        """Background: plan the model at this size, then record the window programs of its hovers."""
        self._probe_later(name).result()  # probed once, by the probing thread
        result = self._plan_shared(name, height, width)
        self._record_programs(name, height, width)
        return result

    def _plan_later(self, name: str, height: int, width: int) -> None:
        if self.planning == "background":
            self._background.submit(("plan", name, height, width), PLAN,
                                    lambda: self._plan_job(name, height, width))

    def plan_ahead(self, names, shapes) -> list:
        """Probe ``names`` and plan them at every (height, width) of ``shapes`` in the background thread (a
        server's start: the registered models at the bundled samples' size). Returns the jobs' Futures."""
        names = [names] if isinstance(names, str) else list(names)
        futures = [self._probe_later(n) for n in names]
        for height, width in shapes:
            futures += [self._background.submit(("plan", n, height, width), PLAN,
                                                lambda n=n, h=height, w=width: self._plan_job(n, h, w))
                        for n in names]
        return futures

    def planned(self, name: str, height: int, width: int) -> bool:
        """Is the model planned at this size (its hovers take the fast path)?"""
        return self._known_plan(name, height, width) is not None

    def _work_lock(self, key) -> threading.Lock:
        """One lock per piece of work, so that concurrent callers wait for it instead of repeating it."""
        with self._lock:
            return self._work_locks.setdefault(key, threading.Lock())

    def _install_verdict(self, name: str, height: int, width: int, header: dict) -> None:
        """Hand a stored verdict to the engine's memo of the model."""
        faster = header.get("replay_faster")
        if isinstance(faster, bool):  # written before the timing per number of hovers at once
            faster = {2: faster}
        remember_verdict(self.model(name), height, width, (header["ok"], header["reason"]), header.get("shrinking"),
                         header.get("replay"), faster)

    def _verdict(self, name: str, height: int, width: int) -> tuple[str, Field, str | None]:
        model = self.model(name)
        self._field(name)
        key = self._key("verdict", self.weights_hash(name), f"{height}x{width}")
        entry = self._load(key)
        if entry is not None:
            self._install_verdict(name, height, width, entry[1])
        method, field, reason = plan(model, height, width)
        if entry is None:
            shrinking = method == "crop" and verify_shrinking(model, height, width)
            replay = shrinking and verify_replay(model, height, width)
            faster = {concurrent: replay and replay_pays(model, height, width, concurrent) for concurrent in (1, 2)}
            self._store(key, {}, {"ok": method == "crop", "reason": reason, "shrinking": shrinking,
                                  "replay": replay, "replay_faster": faster})
        return method, field, reason

    def model_info(self, name: str) -> dict:
        """{"name", "receptive_field", "field", "method", "reason", "checkpoint", "card", "weights_hash"}.

        ``receptive_field``: side in pixels (None for a non-local model); ``field``: its
        reach {"up", "down", "left", "right", "stride", "local"}; ``method``: the hover path
        for local models ("crop", verified per image shape at first use) or "full-image".
        """
        model = self.model(name)
        field = self._field_soon(name)
        path = getattr(model, "checkpoint_path", None)
        info = {"name": name, "checkpoint": path, "card": read_card(path) if path else None,
                "weights_hash": self.weights_hash(name)}
        if field is None:  # still being probed in the background
            return {**info, "receptive_field": None, "field": None, "method": "planning",
                    "reason": "the receptive field is being probed in the background"}
        return {**info,
                "receptive_field": field.size if field.local else None,
                "field": {k: getattr(field, k) for k in ("up", "down", "left", "right", "stride", "local")},
                "method": "crop" if field.local else "full-image",
                "reason": field.reason}

    # -------------------------------------------------------------- results
    def fuse(self, name: str, pair_id: str) -> np.ndarray:
        """The fused image, H x W float32 (cached)."""
        key = self._key("fused", self.weights_hash(name), pair_id)
        entry = self._load(key)
        if entry is not None:
            return entry[0]["fused"]
        a, b = self.get_pair(pair_id)
        model = self.model(name)
        if self.planning == "inline":
            record = self._record(name, pair_id) if (self.weights_hash(name), *a.shape) in self._plans else None
        else:
            record = self._records.get((self.weights_hash(name), pair_id))
        if record is not None:  # the forward pass the hovers keep gave the fused image
            fused = record.fused.to("cpu", torch.float32).numpy()
        else:
            with torch.no_grad():
                ta, tb = (torch.from_numpy(x)[None, None].to(self.device, model_dtype(model)) for x in (a, b))
                fused = run(model, ta, tb)[0, 0].to("cpu", torch.float32).numpy()
        self.computed["fuse"] += 1
        self._store(key, {"fused": fused}, {"model": name, "pair_id": pair_id})
        return fused

    def fused_colour(self, name: str, pair_id: str) -> np.ndarray:
        """The fused image in colour, (H, W, 3) float32 RGB in [0, 1] (``fusion.io.Pair.colour_fused`` of
        ``fuse``): the fused Y on the PET's range with PET's Cb/Cr; a grey pair's in three equal channels."""
        key = (self.weights_hash(name), pair_id)
        hit = self._colour_fused.get(key)
        if hit is None:
            fused = self.fuse(name, pair_id)
            hit = self._colour_fused.put(key, self.colour_pair(pair_id).colour_fused(fused))
        return hit

    def pixel(self, names, pair_id: str, row: int, col: int) -> dict[str, PixelSaliency]:
        """Saliency of fused pixel (row, col) for every model in ``names``: {name: PixelSaliency}.

        Served from a cached dense result when there is one (method "dense-cache"),
        else computed on the receptive-field crop (or the full image where the crop
        is not exact); repeated hovers come from a small in-memory LRU.
        """
        names = [names] if isinstance(names, str) else list(names)
        a, b = self.get_pair(pair_id)
        row, col = int(row), int(col)
        if not (0 <= row < a.shape[0] and 0 <= col < a.shape[1]):
            raise InvalidInput(f"pixel ({row}, {col}) is outside the {a.shape[0]} x {a.shape[1]} image")
        out, missing = {}, []
        for name in names:
            hit = self._pixels.get((self.weights_hash(name), pair_id, row, col))
            if hit is None:
                missing.append(name)
            else:
                out[name] = hit
        if self.planning == "inline":
            for name in missing:
                self._plan(name, *a.shape)  # plans first, so workers only run crops
        elif missing:
            self._prepare_later(missing, pair_id)
        # Longest first (the classic rule for the shortest total on a few workers): by the hover times
        # measured here once every model has one, by field area before that (the image's where unknown).
        costs = {name: self._hover_seconds.get((name, *a.shape)) for name in missing}
        if None in costs.values():
            fields = {name: self._known_field(name) for name in missing}
            costs = {name: a.size if fields[name] is None else fields[name].rows * fields[name].cols
                     for name in missing}
        missing.sort(key=lambda n: -costs[n])
        pool = self._hover_pool  # a server hovers in workers once started and prepared (in the background)
        in_workers = pool is not None and (pool.ready() if self.planning != "inline" else not pool.warming())
        if len(missing) > 1 and in_workers:
            results = self._pixels_in_processes(missing, costs, pair_id, a, b, row, col)
        elif len(missing) > 1:  # small crops run single-threaded: two models at a time use both cores
            results = list(self._workers().map(lambda n: self._timed_pixel(n, pair_id, a, b, row, col), missing))
        else:
            results = [self._timed_pixel(n, pair_id, a, b, row, col) for n in missing]
        for name, result in zip(missing, results, strict=True):
            out[name] = self._pixels.put((self.weights_hash(name), pair_id, row, col), result)
        return {name: out[name] for name in names}

    def prepare_hover(self, names, pair_id: str):
        """Start preparing hovers of ``names`` on the pair in a background thread, so that the first hovers
        need not wait: the verdicts, then (``_prepare``) in the worker processes if there are any, else
        here: the kept forward activations and the window programs. Returns a
        ``concurrent.futures.Future`` (done when the workers are prepared too)."""
        names = [names] if isinstance(names, str) else list(names)
        a, _ = self.get_pair(pair_id)  # an unknown pair fails here, not in the background
        self._prepared.update((self.weights_hash(n), pair_id) for n in names)

        def prepare():
            for name in names:
                self._plan_shared(name, *a.shape)
            pool = self._hover_pool
            if pool is None:
                self._prepare(names, pair_id)
                return
            try:
                warming = pool.warm(names, pair_id)  # after the plans: the workers read the verdicts
            except RuntimeError:  # the service was closed meanwhile: nothing to prepare for
                return
            for future in warming:
                future.result()
        return self._background.submit(("prepare", tuple(names), pair_id), PREPARE, prepare)

    def _prepare_later(self, names: list[str], pair_id: str) -> None:
        """``prepare_hover`` once per process for models and pair hovered here (shown by another process)."""
        new = [n for n in names if (self.weights_hash(n), pair_id) not in self._prepared]
        if self.planning == "background" and new:
            self.prepare_hover(new, pair_id)

    def _prepare(self, names: list[str], pair_id: str) -> None:
        """For each model: the kept forward activations on the pair where hovers replay them, and the window
        programs of the interior and the edges (``fusion.saliency.pixel.record_windows``; once per
        process, image shape, and replay or not)."""
        a, _ = self.get_pair(pair_id)
        for name in names:
            self._record_programs(name, *a.shape, self._record(name, pair_id))

    def _record_programs(self, name: str, height: int, width: int, record: ForwardRecord | None = None) -> None:
        """The window programs of the model's hovers at this size, with ``record`` or without (once per process)."""
        key = (self.weights_hash(name), height, width, record is not None)
        if key not in self._windows_ready:
            if self._plan(name, height, width)[0] == "crop":
                record_windows(self.model(name), height, width, record=record,
                               batch_sizes=tuple(range(1, self._largest_batch + 1)))
            self._windows_ready.add(key)

    def _workers(self, attribute: str = "_pool", size: int = HOVER_WORKERS):
        """A thread pool of this process (a forked child gets its own)."""
        from concurrent.futures import ThreadPoolExecutor

        with self._lock:
            pool, pid = getattr(self, attribute, None) or (None, None)
            if pool is None or pid != os.getpid():
                pool = ThreadPoolExecutor(max_workers=size)
                setattr(self, attribute, (pool, os.getpid()))
            return pool

    def _pixels_in_processes(self, names, costs, pair_id, a, b, row, col) -> list[PixelSaliency]:
        """The hovers of ``names`` in the worker processes, dealt out by ``costs``; whatever they cannot
        answer (other weights, a pair gone from the disk cache, a broken pool) is computed here."""
        remote = [n for n in names if n not in self._local_only and self._dense_rows(n, pair_id) is None
                  and (self.planning == "inline" or self._known_plan(n, *a.shape) is not None)]  # planned ones
        tasks = [(n, pair_id, row, col, self.weights_hash(n)) for n in remote]
        try:
            answers = self._hover_pool.hover(tasks, [costs[n] for n in remote], a.shape)
        except Exception:  # computed here below, where a real error shows again
            answers = [False] * len(remote)
        done = {}
        for name, answer in zip(remote, answers, strict=True):
            if answer is None:  # the workers built other weights (a model given to this service directly)
                self._local_only.add(name)
            elif answer:
                self._note_hover_time(name, a.shape, answer[0])
                self.computed["pixel"] += 1
                done[name] = answer[1]
        rest = [n for n in names if n not in done]
        done.update(zip(rest, self._workers().map(lambda n: self._timed_pixel(n, pair_id, a, b, row, col), rest),
                        strict=True))
        return [done[n] for n in names]

    def _timed_pixel(self, name, pair_id, a, b, row, col) -> PixelSaliency:
        """``_pixel``, keeping a moving average of its time per model and image shape (for the hover order)."""
        start = time.perf_counter()
        result = self._pixel(name, pair_id, a, b, row, col)
        self._note_hover_time(name, a.shape, time.perf_counter() - start)
        return result

    def _note_hover_time(self, name: str, shape, seconds: float) -> None:
        key = (name, *shape)
        previous = self._hover_seconds.get(key)
        self._hover_seconds[key] = seconds if previous is None else 0.8 * previous + 0.2 * seconds

    def _dense_rows(self, name: str, pair_id: str) -> DenseJacobian | None:
        """The dense result in memory whose banded Jacobian serves hover rows, if there is one."""
        dense = self._dense.get((self.weights_hash(name), pair_id))
        return dense if dense is not None and dense.band_a is not None else None

    def _pixel(self, name, pair_id, a, b, row, col) -> PixelSaliency:
        return self._pixel_batch(name, pair_id, a, b, [(row, col)])[0]

    def _pixel_batch(self, name, pair_id, a, b, pixels) -> list[PixelSaliency]:
        """The model's saliency of every (row, col) in ``pixels`` on the pair (H x W arrays a, b), computed
        together: crops of one geometry share one batch (``pixel_jacobians``). Not cached here."""
        dense = self._dense_rows(name, pair_id)
        if dense is not None:
            return [self._dense_pixel(dense, row, col) for row, col in pixels]
        if self.planning == "inline":
            method = self._plan(name, *a.shape)[0]
            record = self._record(name, pair_id) if method == "crop" else None
        else:  # only what is ready: planning, records and programs come from the background
            known = self._known_plan(name, *a.shape)
            if known is None:
                self._plan_later(name, *a.shape)
                return self._first_answers(name, a, b, pixels)
            method = known[0]
            record = self._records.get((self.weights_hash(name), pair_id)) if method == "crop" else None
        self.computed["pixel"] += len(pixels)
        if record is not None:
            a, b = record.inputs  # the tensors the record was made on: no conversion, no comparison
        return pixel_jacobians(self.model(name), a, b, pixels, method=method, record=record,
                               new_programs=self.planning == "inline")

    @staticmethod
    def _dense_pixel(dense: DenseJacobian, row: int, col: int) -> PixelSaliency:
        ja, jb = dense.row(row, col)
        height, width = dense.fused.shape
        window = dense.field.box(row, col, height, width) if dense.field.local else (0, height, 0, width)
        return PixelSaliency(row, col, ja, jb, float(dense.fused[row, col]), window, "dense-cache", dense.reason)

    def _first_answers(self, name, a, b, pixels) -> list[PixelSaliency]:
        """Before the model is planned at this size, exact answers at once: the plain crop where the probed
        field is local with stride 1 (no shrinking windows, no programs), else the full image."""
        field = self._field_soon(name)
        model = self.model(name)
        self.computed["pixel"] += len(pixels)
        if field is not None and field.local and field.stride == 1:
            results = pixel_jacobians(model, a, b, pixels, method="crop", shrinking=False, new_programs=False)
            reason = "the plain crop, while the fast path for this image size is prepared"
        else:
            results = pixel_jacobians(model, a, b, pixels, method="full-image")
            reason = field.reason if field is not None and not field.local else \
                "the full image, while the model's receptive field is probed"
        for result in results:
            result.reason = reason
        return results

    def _record(self, name: str, pair_id: str) -> ForwardRecord | None:
        """The kept full-image activations of model ``name`` on the pair (made once, in memory).

        None where hovers do not replay them: not verified for this model and shape,
        not faster than computing the shrinking windows in this process (``replay_pays``), or one
        record does not fit ``hover_memory_bytes``.
        """
        a, b = self.get_pair(pair_id)
        weights = self.weights_hash(name)
        key = (weights, pair_id)
        hit = self._records.get(key)
        if hit is not None:
            return hit
        self._plan(name, *a.shape)
        model = self.model(name)
        size_key = (weights, *a.shape)
        budget = self._records.max_bytes
        if size_key not in self._record_bytes and budget > 0 and self.replay != "never":
            self._record_bytes[size_key] = self._record_estimate(name, *a.shape)  # before paying for it
        if self.replay == "never" or budget <= 0 or self._record_bytes.get(size_key, 0) > budget:
            return None
        if not (verify_replay(model, *a.shape) if self.replay == "always"
                else replay_pays(model, *a.shape, self._concurrent_hovers)):
            return None
        with self._work_lock(("record", *key)):  # one thread records, the others wait for it
            hit = self._records.get(key)
            if hit is not None:
                return hit
            try:
                record = record_forward(model, a, b)
            except Unsupported:  # verified on a random pair, refused on this one: not again at this shape
                self._record_bytes[size_key] = math.inf
                return None
            self.computed["record"] += 1
            self._record_bytes[size_key] = record.nbytes
            self._records.put(key, record)
        with self._lock:
            self._work_locks.pop(("record", *key), None)  # one per pair: do not let them pile up
        return record if record.nbytes <= self._records.max_bytes else None

    def _record_estimate(self, name: str, height: int, width: int, side: int = 32) -> float:
        """Bytes a record of the model at this size would take: a ``side`` x ``side`` record's, per pixel
        (activations grow with the pixels); ``math.inf`` where the model cannot be recorded."""
        model = self.model(name)
        a, b = (torch.rand(side, side, generator=torch.Generator().manual_seed(seed)) for seed in (1, 2))
        try:
            small = record_forward(model, a, b)
        except Unsupported:
            return math.inf
        return small.nbytes * height * width / side**2

    def cached_dense(self, name: str, pair_id: str) -> DenseJacobian | None:
        """The dense result if it is in the cache (memory or disk), else None."""
        memo_key = (self.weights_hash(name), pair_id)
        hit = self._dense.get(memo_key)
        if hit is not None:
            return hit
        entry = self._load(self._key("dense", self.weights_hash(name), pair_id))
        if entry is None:
            return None
        arrays, header = entry
        dense = DenseJacobian(
            guidance_a=arrays["guidance_a"], guidance_b=arrays["guidance_b"],
            influence_a=arrays["influence_a"], influence_b=arrays["influence_b"], fused=arrays["fused"],
            method=header["method"], field=Field(**header["field"]), band_a=arrays.get("band_a"),
            band_b=arrays.get("band_b"), reason=header["reason"], meta=header["meta"],
            model=self.model(name), inputs=self.colour_pair(pair_id))
        return self._dense.put(memo_key, dense)

    def dense(self, name: str, pair_id: str, progress=None, cancel=None) -> DenseJacobian:
        """The whole-image Jacobian (cached on disk).

        ``progress(done, total, preview)``: preview maps every name in
        ``fusion.saliency.MAP_NAMES`` to an H x W map, NaN where not yet known.
        ``cancel``: a callable returning True or a threading.Event (raises ``Cancelled``).
        """
        hit = self.cached_dense(name, pair_id)
        if hit is not None:
            return hit
        a, b = self.get_pair(pair_id)
        method, _, reason = self._plan(name, *a.shape)
        dense = dense_jacobian(self.model(name), a, b, progress=progress, cancel=cancel,
                               method="auto" if method == "crop" else "full-image")
        dense.reason = dense.reason if method == "crop" else reason
        self.computed["dense"] += 1
        dense.meta = {"model": name, "weights_hash": self.weights_hash(name), "pair_id": pair_id,
                      "method_version": METHOD_VERSION}
        return self.put_dense(name, pair_id, dense)

    # -------------------------------------------------------------- whole image in blocks (fusion.fanout)
    def dense_method(self, name: str, pair_id: str) -> str:
        """The path of the model's dense result on this pair: "crops", "coloured" or "full-image"."""
        a, _ = self.get_pair(pair_id)
        if self._plan(name, *a.shape)[0] != "crop":
            return "full-image"
        return dense_method(self.model(name), *a.shape)[0]

    def _block_key(self, name: str, pair_id: str, top: int, bottom: int) -> str:
        return self._key("block", self.weights_hash(name), pair_id, f"{top}-{bottom}")

    def has_block(self, name: str, pair_id: str, top: int, bottom: int) -> bool:
        """Is output rows [top, bottom) of the model's dense result stored (or the whole result)?"""
        return self._block_key(name, pair_id, top, bottom) in self.cache or self.has_dense(name, pair_id)

    def has_dense(self, name: str, pair_id: str) -> bool:
        """Is the model's dense result on this pair cached (without reading it)?"""
        return ((self.weights_hash(name), pair_id) in self._dense.data
                or self._key("dense", self.weights_hash(name), pair_id) in self.cache)

    def dense_rows(self, name: str, pair_id: str, top: int, bottom: int, progress=None, cancel=None) -> None:
        """Compute output rows [top, bottom) of the model's dense result and store them in the cache for
        ``merge_rows`` (``fusion.saliency.blocks.dense_block``); nothing when they, or the whole result,
        are stored already. ``progress(done, total, preview)``: preview maps of the block's rows."""
        if self.has_block(name, pair_id, top, bottom):
            return
        a, b = self.get_pair(pair_id)
        keep_band = self._band_bytes(name, *a.shape) <= self.max_band_bytes
        block = dense_block(self.model(name), a, b, top, bottom, self.dense_method(name, pair_id), progress,
                            cancel, keep_band)
        self._store(self._block_key(name, pair_id, top, bottom), block.arrays(),
                    {"top": top, "bottom": bottom, "method": block.method, "field": block.field.__dict__,
                     "reason": block.reason})

    def _band_bytes(self, name: str, height: int, width: int) -> int:
        """Bytes of the model's banded Jacobian (both inputs, float32) at this size."""
        field = self._field(name).clipped(height, width)
        return 2 * 4 * height * width * field.rows * field.cols

    def dense_cost(self, name: str, height: int, width: int) -> float:
        """Relative work of the model's dense result at this size (pixels x field area), for splitting requests."""
        field = self._field(name).clipped(height, width)
        return float(height * width * field.rows * field.cols) if field.local else float(height * width) ** 2

    def dense_bytes(self, name: str, height: int, width: int) -> float:
        """Estimated peak memory of the model's dense result computed in one piece: the kept forward
        activations and the banded Jacobian."""
        record = self._record_estimate(name, height, width)
        return (record if math.isfinite(record) else 0.0) + self._band_bytes(name, height, width)

    def merge_rows(self, name: str, pair_id: str, bounds: list[tuple[int, int]]) -> DenseJacobian:
        """The dense result from its stored blocks of rows ``bounds`` (``dense_rows``), stored as ``dense``
        stores it; the blocks are then deleted. Raises KeyError when a block is missing (evicted)."""
        if self.has_dense(name, pair_id):
            return self.cached_dense(name, pair_id)
        blocks = []
        for top, bottom in bounds:
            entry = self._load(self._block_key(name, pair_id, top, bottom))
            if entry is None:
                raise KeyError(f"rows {top}-{bottom} of {name} on pair {pair_id[:8]} are not in the cache")
            arrays, header = entry
            blocks.append(DenseBlock(top, bottom, **arrays, method=header["method"], field=Field(**header["field"]),
                                     reason=header["reason"]))
        a, b = self.get_pair(pair_id)
        dense = merge_blocks(self.model(name), a, b, blocks)
        if dense.method == "full-image" and dense.reason is None:
            dense.reason = self._plan(name, *a.shape)[2]
        self.computed["dense"] += 1
        dense.meta = {"model": name, "weights_hash": self.weights_hash(name), "pair_id": pair_id,
                      "method_version": METHOD_VERSION}
        dense = self.put_dense(name, pair_id, dense)
        for top, bottom in bounds:
            self.cache.delete(self._block_key(name, pair_id, top, bottom))
        return dense

    def put_dense(self, name: str, pair_id: str, dense: DenseJacobian) -> DenseJacobian:
        """Store a dense result (computed here, or read back with ``load_hdf5``) as model ``name``'s
        on the stored pair ``pair_id``, so that every process serves it from the cache.

        Raises ValueError, storing nothing, when ``dense.meta`` says it was computed with other
        weights, on another pair, or by another ``METHOD_VERSION``.
        """
        a, b = self.get_pair(pair_id)
        meta, ours = dense.meta or {}, self.weights_hash(name)
        theirs = meta.get("weights_hash") or ""
        if theirs != ours:
            raise ValueError(f"it was computed with other weights of {name} (weights hash "
                             f"{theirs[:12] or 'not recorded'}, the loaded model's {ours[:12]})")
        if meta.get("pair_id") != pair_id or dense.shape != a.shape:
            raise ValueError("it was computed on another image pair")
        if meta.get("method_version") != METHOD_VERSION:
            raise ValueError(f"it was computed by method version {meta.get('method_version') or '?'}; "
                             f"this library is at version {METHOD_VERSION}")
        dense.meta = {**meta, "model": name}
        dense.model, dense.inputs = self.model(name), self.colour_pair(pair_id)  # a Pair: HDF5 keeps colour
        arrays = {**{k: getattr(dense, k) for k in ("guidance_a", "guidance_b", "influence_a", "influence_b")},
                  "fused": dense.fused}
        if dense.band_a is not None and dense.band_a.nbytes * 2 <= self.max_band_bytes:
            arrays.update(band_a=dense.band_a, band_b=dense.band_b)
        header = {"method": dense.method, "reason": dense.reason, "field": dense.field.__dict__,
                  "meta": dense.meta}
        self._store(self._key("dense", ours, pair_id), arrays, header)
        return self._dense.put((ours, pair_id), dense)
