"""Whole-image jobs: a line of waiting jobs, slots per user and in total, and heartbeats.

Every web process and every job process shares one record of the jobs ("tickets"), kept
in a store they all reach: the background-job disk cache for local jobs, Redis when
``REDIS_URL`` is set (Celery workers; they share the web server's disk cache, so they run on
its machine: docs/deployment.md). A ticket is

    waiting  -> running (holds a slot; its job is started) -> done | lost | cancelled

A request adds a waiting ticket; the polls of the pages admit waiting tickets in the
order they came, while fewer than ``total`` tickets run and their user runs fewer than
``per_user``, and the process that admitted a ticket starts its job. A running job
writes a heartbeat every ``BEAT_EVERY`` s that lives ``LOST_AFTER`` s; a running ticket
whose heartbeat is gone (a SIGKILLed job, a dead worker) is lost and its slot is free
again. A started job gets ``START_GRACE`` s to send its first heartbeat (a message waiting
in the broker, a starting process); once it has begun, only its heartbeat counts (a job
requeued by Celery after its process died must begin again within ``LOST_AFTER`` s). A waiting
ticket whose page stopped polling for ``PAGE_GONE`` s is dropped. A job whose ticket is no
longer running when it starts (it was cancelled or lost, or Celery redelivered it late) does
nothing; a ticket started ``MAX_STARTS`` times (its worker died each time) is lost.

Heartbeats are keys that expire (in Redis by Redis's own clock), so the clocks of
worker machines never matter. Ticket times are the web processes' clocks.
"""
from __future__ import annotations

import json
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass

LOST_AFTER = 25.0  # s a heartbeat lives: a running job silent this long is lost
BEAT_EVERY = 2.0  # s between heartbeats of a running job
START_GRACE = 120.0  # s a started job may take to send its first heartbeat
PAGE_GONE = 30.0  # s without a poll from its page after which a waiting ticket is dropped
DONE_GRACE = 30.0  # s a finished job may take to store its result
KEEP = 3600.0  # s an ended ticket is kept (a late redelivery of its job is then skipped)
MAX_STARTS = 3  # starts of one ticket (its worker dying each time) before it counts as lost

ACTIVE = ("waiting", "running")


class DiskStore:
    """Tickets in a diskcache directory (local disk: every process of one machine)."""

    def __init__(self, directory: str):
        import diskcache

        self.directory = str(directory)
        self.cache = diskcache.Cache(self.directory)

    def __getstate__(self):  # a job process opens the cache itself (never across fork)
        return {"directory": self.directory}

    def __setstate__(self, state):
        self.__init__(state["directory"])

    def locked(self):
        return self.cache.transact()

    def get(self, name: str):
        return self.cache.get(name)

    def put(self, name: str, value, ttl: float | None = None) -> None:
        self.cache.set(name, value, expire=ttl)

    def delete(self, name: str) -> None:
        self.cache.delete(name)


class RedisStore:
    """Tickets in Redis (JSON values; expiry by Redis's clock), for web processes and Celery workers."""

    PREFIX = "fusion:jobs:"

    def __init__(self, url: str):
        import redis

        self.url = url
        self.client = redis.Redis.from_url(url)

    def __getstate__(self):
        return {"url": self.url}

    def __setstate__(self, state):
        self.__init__(state["url"])

    @contextmanager
    def locked(self):
        with self.client.lock(self.PREFIX + "lock", timeout=10, blocking_timeout=30):
            yield

    def get(self, name: str):
        raw = self.client.get(self.PREFIX + name)
        return None if raw is None else json.loads(raw)

    def put(self, name: str, value, ttl: float | None = None) -> None:
        self.client.set(self.PREFIX + name, json.dumps(value), px=None if ttl is None else int(ttl * 1000))

    def delete(self, name: str) -> None:
        self.client.delete(self.PREFIX + name)


@dataclass(frozen=True)
class Start:
    """A ticket just admitted: the caller starts its job (``job`` names it in the manager's registry)."""
    key: str
    job: str
    args: object
    context: dict


def ordinal(n: int) -> str:
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def waiting_text(view: dict, long: bool = False) -> str:
    """"waiting: 2nd in line" (``long``: and why) for a waiting ticket's page status."""
    text = f"waiting: {ordinal(int(view.get('place') or 1))} in line"
    return f"{text} ({view['why']}); it starts by itself" if long and view.get("why") else text


class JobSlots:
    """The shared record of whole-image jobs (see the module docstring). Times are overridable for tests."""

    STATE = "tickets"

    def __init__(self, store, per_user: int, total: int, *, alive=None, lost_after: float = LOST_AFTER,
                 start_grace: float = START_GRACE, page_gone: float = PAGE_GONE, beat_every: float = BEAT_EVERY):
        self.store, self.per_user, self.total = store, per_user, total
        self.alive = alive  # optional: handle -> False when the job's process is surely gone
        self.lost_after, self.start_grace, self.page_gone = lost_after, start_grace, page_gone
        self.beat_every = beat_every

    # ---------------------------------------------------------------- the web side
    def submit(self, key: str, user: str, job: str, args, context: dict) -> list[Start]:
        """Add a waiting ticket for ``user`` (with what starts its job; the ticket keeps ``job``, the name
        of the background callback); returns the tickets to start now."""
        self.store.put(f"args:{key}", {"job": job, "args": args, "context": context}, ttl=KEEP)
        with self.store.locked():
            state = self._state()
            state["seq"] += 1
            now = time.time()
            state["tickets"][key] = {"user": user, "job": job, "state": "waiting", "n": state["seq"],
                                     "created": now, "seen": now, "starts": 0, "handle": None, "shown": None}
            admitted = self._sweep(state, now)
            self.store.put(self.STATE, state)
        return self._starts(admitted)

    def poll(self, key: str) -> tuple[dict | None, dict | None, list[Start]]:
        """A page polls its job: (its ticket, its page status if changed since last told, tickets to start).

        Also finds lost jobs, drops waiting tickets nobody watches and admits waiting tickets.
        """
        with self.store.locked():
            state = self._state()
            now = time.time()
            ticket = state["tickets"].get(key)
            if ticket is not None and ticket["state"] == "waiting":
                ticket["seen"] = now
            admitted = self._sweep(state, now)
            news = None
            if ticket is not None:
                view = self._view(state, key)
                if view != ticket["shown"]:
                    ticket["shown"] = news = view
            self.store.put(self.STATE, state)
        return ticket, news, self._starts(admitted)

    def started(self, key: str, handle) -> None:
        """Its job was handed to a process or worker (``handle``: a pid or a Celery task id)."""
        self._update(key, handle=handle)

    def not_started(self, key: str, why: str) -> None:
        self._update(key, state="lost", why=why, ended=time.time())

    def cancel(self, key: str):
        """Cancel a waiting or running ticket; returns its job's handle (to stop it), if it had one."""
        with self.store.locked():
            state = self._state()
            ticket = state["tickets"].get(key)
            if ticket is None:
                return None
            if ticket["state"] in ACTIVE:
                ticket.update(state="cancelled", ended=time.time())
                self.store.put(self.STATE, state)
        return ticket.get("handle")

    def ticket(self, key: str) -> dict | None:
        return self._state()["tickets"].get(key)

    # ---------------------------------------------------------------- the job side
    def begin(self, key: str) -> bool:
        """In the job's process, before it works: False when its ticket is not running (do nothing then)."""
        with self.store.locked():
            state = self._state()
            ticket = state["tickets"].get(key)
            if ticket is None or ticket["state"] != "running":
                return False
            ticket["starts"] += 1
            if ticket["starts"] > MAX_STARTS:
                ticket.update(state="lost", ended=time.time(),
                              why=f"its worker stopped {MAX_STARTS} times (out of memory?)")
                self.store.put(self.STATE, state)
                return False
            self.beat(key)
            self.store.put(self.STATE, state)
        return True

    def beat(self, key: str) -> None:
        self.store.put(f"beat:{key}", 1, ttl=self.lost_after)

    def finish(self, key: str) -> None:
        with self.store.locked():
            state = self._state()
            ticket = state["tickets"].get(key)
            if ticket is not None and ticket["state"] == "running":
                ticket.update(state="done", ended=time.time())
                self.store.put(self.STATE, state)
        self.store.delete(f"beat:{key}")

    @contextmanager
    def heartbeat(self, key: str):
        """Beat every ``beat_every`` s from a thread while the block runs (also during one long step)."""
        stop = threading.Event()

        def beat():
            while not stop.wait(self.beat_every):
                try:
                    self.beat(key)
                except Exception:  # noqa: BLE001 - a busy store: the next beat tries again
                    pass
        thread = threading.Thread(target=beat, name=f"heartbeat-{key[:8]}", daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join(timeout=5)

    # ---------------------------------------------------------------- inside the lock
    def _state(self) -> dict:
        return self.store.get(self.STATE) or {"seq": 0, "tickets": {}}

    def _update(self, key: str, **changes) -> None:
        with self.store.locked():
            state = self._state()
            ticket = state["tickets"].get(key)
            if ticket is not None and ticket["state"] == "running":
                ticket.update(changes)
                self.store.put(self.STATE, state)

    def _running_alive(self, key: str, ticket: dict, now: float) -> bool:
        if self.alive is not None and ticket.get("handle") is not None and not self.alive(ticket["handle"]):
            return False
        if self.store.get(f"beat:{key}") is not None:
            return True
        return ticket["starts"] == 0 and now - ticket["admitted"] < self.start_grace  # not begun yet

    def _sweep(self, state: dict, now: float) -> list[str]:
        """Lose silent jobs, drop unwatched waiting and old ended tickets, then admit in order."""
        tickets = state["tickets"]
        for key, t in list(tickets.items()):
            if t["state"] == "running" and not self._running_alive(key, t, now):
                t.update(state="lost", ended=now, why="its worker stopped")
            elif t["state"] == "waiting" and now - t["seen"] > self.page_gone:
                del tickets[key]
            elif t["state"] not in ACTIVE and now - t.get("ended", now) > KEEP:
                del tickets[key]
        admitted = []
        for key, t in sorted(tickets.items(), key=lambda kv: kv[1]["n"]):
            if t["state"] != "waiting":
                continue
            running = [r for r in tickets.values() if r["state"] == "running"]
            if len(running) >= self.total:
                break
            if sum(r["user"] == t["user"] for r in running) < self.per_user:
                t.update(state="running", admitted=now)
                admitted.append(key)
        return admitted

    def _view(self, state: dict, key: str) -> dict:
        """What the page shows of its ticket: waiting (place in line and why), running or how it ended."""
        tickets = state["tickets"]
        ticket = tickets[key]
        if ticket["state"] != "waiting":
            return {"state": ticket["state"], **({"why": ticket["why"]} if ticket.get("why") else {})}
        ahead = [t for t in tickets.values() if t["state"] == "waiting" and t["n"] < ticket["n"]]
        mine = sum(t["state"] == "running" and t["user"] == ticket["user"] for t in tickets.values())
        if mine >= self.per_user:
            why = f"your other job{'s' if mine > 1 else ''} must finish first ({self.per_user} per user)"
        else:
            why = f"the server runs {self.total} job{'s' if self.total > 1 else ''} at once"
        return {"state": "waiting", "place": len(ahead) + 1, "why": why}

    def _starts(self, keys: list[str]) -> list[Start]:
        starts = []
        for key in keys:
            stored = self.store.get(f"args:{key}")
            if stored is None:
                self.not_started(key, "its request expired")
                continue
            starts.append(Start(key, stored["job"], stored["args"], stored["context"]))
        return starts
