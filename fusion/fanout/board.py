"""Where the processes working on one request meet: a small key-value store with expiring entries.

``DiskBoard``: a diskcache directory (every process of one machine). ``RedisBoard``: Redis (every
machine of a Celery deployment). Both take JSON-able values or bytes; ``add`` is atomic (set only
if absent), which is what a claim needs. ``spec`` rebuilds the board in another process.
"""
from __future__ import annotations

import json


class DiskBoard:
    """A board in a diskcache directory."""

    def __init__(self, directory: str):
        import diskcache

        self.spec = {"kind": "disk", "directory": str(directory)}
        self.cache = diskcache.Cache(str(directory))

    def get(self, name: str):
        return self.cache.get(name)

    def put(self, name: str, value, ttl: float | None = None) -> None:
        self.cache.set(name, value, expire=ttl)

    def add(self, name: str, value, ttl: float | None = None) -> bool:
        return bool(self.cache.add(name, value, expire=ttl))

    def delete(self, name: str) -> None:
        self.cache.delete(name)


class RedisBoard:
    """A board in Redis (expiry by Redis's clock)."""

    PREFIX = "fusion:fanout:"

    def __init__(self, url: str):
        import redis

        self.spec = {"kind": "redis", "url": url}
        self.client = redis.Redis.from_url(url)

    @staticmethod
    def _encode(value) -> bytes:
        return b"B" + value if isinstance(value, bytes) else b"J" + json.dumps(value).encode()

    @staticmethod
    def _decode(raw: bytes | None):
        if raw is None:
            return None
        return raw[1:] if raw[:1] == b"B" else json.loads(raw[1:])

    def get(self, name: str):
        return self._decode(self.client.get(self.PREFIX + name))

    def put(self, name: str, value, ttl: float | None = None) -> None:
        self.client.set(self.PREFIX + name, self._encode(value), px=None if ttl is None else int(ttl * 1000))

    def add(self, name: str, value, ttl: float | None = None) -> bool:
        return bool(self.client.set(self.PREFIX + name, self._encode(value), nx=True,
                                    px=None if ttl is None else int(ttl * 1000)))

    def delete(self, name: str) -> None:
        self.client.delete(self.PREFIX + name)


Board = DiskBoard | RedisBoard


def open_board(spec: dict) -> Board:
    """The board described by ``spec`` (``board.spec`` of a board made elsewhere)."""
    if spec.get("kind") == "redis":
        return RedisBoard(spec["url"])
    if spec.get("kind") == "disk":
        return DiskBoard(spec["directory"])
    raise ValueError(f"unknown board {spec!r}")
