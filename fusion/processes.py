"""Small helpers for worker processes: watch the owner, lower the priority, renew a claim while working."""
from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager


def running(pid: int) -> bool:
    """Is process ``pid`` there, and not a zombie (dead, waiting for its parent to collect it)?"""
    if os.path.isdir("/proc/self"):  # Linux: the state follows the command name in brackets
        try:
            with open(f"/proc/{pid}/stat") as stat:
                return stat.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
        except FileNotFoundError:
            return False
    try:  # elsewhere, ask the kernel (a zombie then counts as running)
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # there, under another user
        pass
    return True


def exit_when_orphaned(owner_pid: int, every_s: float = 1.0) -> threading.Thread:
    """Start a daemon thread that ends this process (``os._exit(0)``) once ``owner_pid`` is gone.

    A process killed outright (gunicorn's SIGKILL of a timed-out worker, the OOM killer) runs no
    exit handler, and its workers would otherwise wait or compute for ever.
    """
    def watch() -> None:
        while True:
            time.sleep(every_s)
            if not running(owner_pid):
                os._exit(0)

    thread = threading.Thread(target=watch, daemon=True, name="owner-watch")
    thread.start()
    return thread


def lower_priority(niceness: int) -> int:
    """Raise this process's niceness to at least ``niceness`` (never lowers it); returns the niceness now.

    Whole-image work runs below the web process and its hover workers, so pages stay responsive while
    every core computes. Where priorities are not supported, nothing changes.
    """
    try:
        now = os.getpriority(os.PRIO_PROCESS, 0)
        if now < niceness:
            os.setpriority(os.PRIO_PROCESS, 0, niceness)
        return os.getpriority(os.PRIO_PROCESS, 0)
    except (AttributeError, OSError):
        return 0


@contextmanager
def renewing(renew: Callable[[], bool | None], every_s: float, name: str = "renewal") -> Iterator[None]:
    """Call ``renew()`` every ``every_s`` seconds from a daemon thread while the ``with`` block runs (a claim
    or lease that expires unless its holder renews it); ``renew()`` returning False stops the renewals.
    The thread is stopped and joined when the block ends, so no renewal follows it."""
    done = threading.Event()

    def loop() -> None:
        while not done.wait(every_s):
            if renew() is False:
                return

    thread = threading.Thread(target=loop, daemon=True, name=name)
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join()
