"""A small thread-safe in-memory LRU (the service's and the dashboard's per-process memories)."""
from __future__ import annotations

import threading
from collections import OrderedDict


class LRU:
    """At most ``size`` entries and, with ``max_bytes``, at most that many bytes (as told by each value's
    ``nbytes``; a value larger than that is not kept). ``len()``, ``in`` and ``keys()`` see the entries."""

    def __init__(self, size: int, max_bytes: int | None = None):
        self.size, self.max_bytes, self.data, self.lock = size, max_bytes, OrderedDict(), threading.Lock()

    @property
    def nbytes(self) -> int:
        return sum(v.nbytes for v in self.data.values())

    def __len__(self) -> int:
        return len(self.data)

    def __contains__(self, key) -> bool:
        return key in self.data

    def keys(self) -> list:
        """The keys, least recently used first."""
        with self.lock:
            return list(self.data)

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
