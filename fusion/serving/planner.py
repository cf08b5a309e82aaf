"""Models and their plans for a saliency service: built once per process, planned once per machine.

A ``Planner`` builds the registered models (``fusion.create_model``, parameters frozen), names their
weights by content (``keys.weights_hash``), and plans each at an image size: probe the receptive
field, verify the crop, the shrinking windows and their replay, time the replay (``HoverPlan``).
The verdicts are stored in the disk store as ``StoredPlan`` values and read back by every process;
``_install`` is the one place that hands them to the engine's memo of a model.

Where the planning runs (``planning``): "inline" (in the first call that needs it: a library's or the
command line's choice), "background" (a server's: the calls answer at once by an exact path while this
process's background threads plan, one process at a time per model and size, under a lease in the
cache) or "elsewhere" (nothing is planned here: a hover worker process, whose owner plans).
"""
from __future__ import annotations

import threading
from typing import NamedTuple

from torch import nn

from ..background import FIELD, BackgroundWork
from ..models import create_model
from ..saliency.field import Field, analyse, remember_field
from ..saliency.methods import Method
from ..saliency.planning import plan, replay_pays
from ..saliency.verification import remember_verdict, verify_replay, verify_shrinking
from .keys import weights_hash
from .store import DiskStore, StoredPlan

#: Where one-off planning runs (see the module docstring).
PLANNING = ("inline", "background", "elsewhere")
#: A call waits at most this long for a field being probed in the background, then takes the full image.
#: A probe costs a fraction of a second per model and the full image many times more, so waiting for the
#: probe is the faster exact answer nearly always.
FIELD_WAIT_S = 20.0


class HoverPlan(NamedTuple):
    """The hover path of a model at an image size (``Method.CROPS`` or ``FULL_IMAGE``), the probed field, and
    why not the crops."""

    method: Method
    field: Field
    reason: str | None


class Planner:
    """The models of one process and their plans (see the module docstring).

    ``background``, ``probing``: this process's planning threads (``fusion.background.BackgroundWork``).
    """

    def __init__(self, store: DiskStore, device, checkpoint="default", planning: str = "inline"):
        if planning not in PLANNING:
            raise ValueError(f"planning must be one of {', '.join(map(repr, PLANNING))}, got {planning!r}")
        self.store, self.device, self.checkpoint, self.planning = store, device, checkpoint, planning
        self.background = BackgroundWork()  # planning and preparation
        self.probing = BackgroundWork(name="fusion-probe")  # short, and a first hover may wait for it
        self._lock = threading.RLock()
        self._models: dict[str, nn.Module] = {}
        self._hashes: dict[str, str] = {}
        self._fields: dict[str, Field] = {}  # weights hash -> probed field
        self._plans: dict[tuple, HoverPlan] = {}  # (weights hash, H, W) -> plan
        self._work_locks: dict[tuple, threading.Lock] = {}

    def close(self) -> None:
        """Cancel the queued background jobs (a later one starts the threads again)."""
        self.background.close()
        self.probing.close()

    # -------------------------------------------------------------- models
    def model(self, name: str) -> nn.Module:
        """The model ``name`` (``fusion.create_model``), built once per process."""
        with self._lock:
            if name not in self._models:
                model = create_model(name, checkpoint=self.checkpoint).to(self.device)
                for p in model.parameters():
                    p.requires_grad_(False)  # saliency needs input gradients only
                self.use_model(name, model, weights_hash(model))
            return self._models[name]

    def use_model(self, name: str, model: nn.Module, weights: str | None = None) -> None:
        """Serve ``model`` under ``name`` in this process from now on (other weights than the registry's,
        for example), named by ``weights`` (default: its ``weights_hash``). Hover worker processes build
        the registry's model: they answer None for it, and its hovers are computed in this process."""
        with self._lock:
            self._models[name], self._hashes[name] = model, weights or weights_hash(model)

    def weights_hash(self, name: str) -> str:
        self.model(name)
        return self._hashes[name]

    def work_lock(self, key) -> threading.Lock:
        """One lock per piece of work, so that concurrent callers wait for it instead of repeating it."""
        with self._lock:
            return self._work_locks.setdefault(key, threading.Lock())

    def drop_work_lock(self, key) -> None:
        with self._lock:
            self._work_locks.pop(key, None)

    # -------------------------------------------------------------- fields
    def known_field(self, name: str) -> Field | None:
        """The model's probed field if this process or the store knows it (never probes)."""
        weights = self.weights_hash(name)
        field = self._fields.get(weights)
        if field is None:
            field = self.store.field(weights)
            if field is not None:
                field = self._fields[weights] = self._install(name, field)
        return field

    def field(self, name: str) -> Field:
        """The model's probed field, shared through the store so only one process probes."""
        field = self.known_field(name)
        if field is None:
            field = analyse(self.model(name))
            self.store.put_field(self.weights_hash(name), field)
            self._fields[self.weights_hash(name)] = field
        return field

    def field_soon(self, name: str) -> Field | None:
        """The field; without inline planning, probed in the background and waited for at most ``FIELD_WAIT_S``
        (None if it is not known by then, or never probed here: planning "elsewhere")."""
        field = self.known_field(name)
        if field is not None or self.planning == "elsewhere":
            return field
        if self.planning == "inline":
            return self.field(name)
        try:
            return self.probe_later(name).result(FIELD_WAIT_S)
        except Exception:  # noqa: BLE001 - not probed in time (or the probe failed): the caller takes the full image
            return None

    def probe_later(self, name: str):
        """The Future of the model's field, probed in the probing thread (by one process at a time)."""
        lease = ("field", self.weights_hash(name))
        return self.probing.submit(("field", name), FIELD, lambda: self.store.one_at_a_time(
            lease, lambda: self.known_field(name), lambda: self.field(name)))

    # -------------------------------------------------------------- plans
    def plan(self, name: str, height: int, width: int) -> HoverPlan:
        """The model's plan at this size, read from the store or made here (verifying and timing once)."""
        memo_key = (self.weights_hash(name), height, width)
        memo = self._plans.get(memo_key)
        if memo is not None:
            return memo
        with self.work_lock(("plan", *memo_key)):  # a second caller waits for the first one's verdict
            if memo_key not in self._plans:
                self._plans[memo_key] = self._make_plan(name, height, width)
        return self._plans[memo_key]

    def known_plan(self, name: str, height: int, width: int) -> HoverPlan | None:
        """The plan if this process or the store knows it (never plans)."""
        memo_key = (self.weights_hash(name), height, width)
        memo = self._plans.get(memo_key)
        if memo is not None or self.known_field(name) is None:
            return memo
        stored = self.store.plan(memo_key[0], height, width)
        if stored is None:
            return None
        self._install(name, None, height, width, stored)
        self._plans[memo_key] = HoverPlan(*plan(self.model(name), height, width))  # every verdict installed: no work
        return self._plans[memo_key]

    def is_planned(self, name: str, height: int, width: int) -> bool:
        """Has this process the model's plan at this size in memory (no store read)?"""
        return (self.weights_hash(name), height, width) in self._plans

    def plan_shared(self, name: str, height: int, width: int) -> HoverPlan:
        """``plan`` by one process at a time; the others wait for its verdict."""
        return self.store.one_at_a_time(("plan", self.weights_hash(name), f"{height}x{width}"),
                                        lambda: self.known_plan(name, height, width),
                                        lambda: self.plan(name, height, width))

    def _make_plan(self, name: str, height: int, width: int) -> HoverPlan:
        model = self.model(name)
        self.field(name)
        weights = self.weights_hash(name)
        stored = self.store.plan(weights, height, width)
        if stored is not None:
            self._install(name, None, height, width, stored)
        method, field, reason = plan(model, height, width)
        if stored is None:
            shrinking = method == Method.CROPS and verify_shrinking(model, height, width)
            replay = shrinking and verify_replay(model, height, width)
            faster = {concurrent: replay and replay_pays(model, height, width, concurrent) for concurrent in (1, 2)}
            self.store.put_plan(weights, height, width,
                                StoredPlan(method == Method.CROPS, reason, shrinking, replay, faster))
        return HoverPlan(method, field, reason)

    def _install(self, name: str, field: Field | None, height: int = 0, width: int = 0,
                 stored: StoredPlan | None = None) -> Field | None:
        """Hand a field or plan read from the store to the engine's memo of the model (the only place that does)."""
        model = self.model(name)
        if field is not None:
            remember_field(model, field)
        if stored is not None:
            remember_verdict(model, height, width, (stored.ok, stored.reason), stored.shrinking, stored.replay,
                             stored.replay_faster)
        return field
