"""The disk store's one-at-a-time leases: held while the work runs, however long; gone soon after a kill."""
from __future__ import annotations

import multiprocessing
import os
import signal
import threading
import time

from fusion.serving.keys import cache_key
from fusion.serving.store import DiskStore

LEASE = ("plan", "weights", "64x64")


def hold_lease_forever(cache_dir: str, started) -> None:
    store = DiskStore(cache_dir, 2**30)
    store.one_at_a_time(LEASE, lambda: None, lambda: (started.set(), time.sleep(600)), seconds=1.0)


def test_a_killed_holders_lease_expires_within_its_seconds(tmp_path):
    started = multiprocessing.get_context("fork").Event()
    holder = multiprocessing.get_context("fork").Process(target=hold_lease_forever, args=(str(tmp_path), started))
    holder.start()
    try:
        assert started.wait(30), "the holder never took the lease"
        os.kill(holder.pid, signal.SIGKILL)
        holder.join(10)
        store, outcome = DiskStore(tmp_path, 2**30), []
        begun = time.monotonic()
        waiter = threading.Thread(target=lambda: outcome.append(
            store.one_at_a_time(LEASE, lambda: None, lambda: "computed here", seconds=1.0)), daemon=True)
        waiter.start()
        waiter.join(30)
        assert outcome == ["computed here"], "the lease of the killed holder did not expire"
        assert time.monotonic() - begun < 10
    finally:
        if holder.is_alive():
            holder.kill()


def test_a_working_holder_keeps_its_lease_past_its_seconds(tmp_path):
    first, second = DiskStore(tmp_path, 2**30), DiskStore(tmp_path, 2**30)
    result, computed = {}, []

    def slow() -> str:
        computed.append("first")
        time.sleep(2.5)  # five times the lease: renewed meanwhile
        result["value"] = "first's"
        return "first's"

    holder = threading.Thread(target=lambda: first.one_at_a_time(LEASE, lambda: result.get("value"), slow,
                                                                  seconds=0.5))
    holder.start()
    end = time.monotonic() + 30
    while not computed and time.monotonic() < end:
        time.sleep(0.05)
    assert computed == ["first"], "the first caller never took the lease"
    found = second.one_at_a_time(LEASE, lambda: result.get("value"),
                                 lambda: computed.append("second") or "second's", seconds=0.5)
    holder.join(30)
    assert found == "first's"
    assert computed == ["first"]
    assert cache_key("lease", *LEASE) not in first.cache  # released at the end
