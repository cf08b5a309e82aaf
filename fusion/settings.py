"""Settings of the library, the command line and the dashboard, read from the environment here only.

``Settings.from_env()`` reads and checks every variable below at once (a bad value raises ValueError
naming the variable); ``read(field)`` reads one of them, for code that needs only that one at import
time. The dashboard adds its own settings (host, port, limits: ``dashboard/config.py``) on top.

    variable                  field             default
    FUSION_CACHE_DIR          cache_dir         ~/.cache/fusion-saliency: the shared disk cache of the
                                                saliency service and of background jobs (local disk,
                                                never NFS: SQLite)
    FUSION_CHECKPOINT_DIR     checkpoint_dir    the repository's checkpoints/ (bundled weights and cards)
    FUSION_HOVER_MEMORY_MB    hover_memory_mb   1024: memory per process for kept full-image forward
                                                activations that hovers replay (0: none kept)
    FUSION_HOVER_PROCESSES    hover_processes   unset: the context's default (``hover_workers``): 0 for
                                                the library and the command line (hovers run in threads
                                                of the calling process), 2 for the dashboard on a machine
                                                with 2 or more cores (else 0); gunicorn.conf.py sets one
                                                per core over its web workers unless this is set
    FUSION_DENSE_MEMORY_MB    dense_memory_mb   unset: the engine's 1024; extra memory of one chunk of
                                                whole-image backward passes (at least 16)
    FUSION_DATA_WORKERS       data_workers      0: processes making training batches ahead of time
    FUSION_PLUGINS            plugins           "": modules or .py files (comma- or path-separated) that
                                                register user models
"""
from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from pathlib import Path

DEFAULT_CACHE_DIR = Path.home() / ".cache" / "fusion-saliency"
DEFAULT_CHECKPOINT_DIR = Path(__file__).resolve().parent.parent / "checkpoints"
#: Hover worker processes by context, where FUSION_HOVER_PROCESSES is unset (see ``Settings.hover_workers``).
LIBRARY_HOVER_PROCESSES = 0
SERVER_HOVER_PROCESSES = 2


def _path(name: str, text: str) -> Path:
    return Path(text).expanduser()


def _megabytes(name: str, text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"${name} must be a number of megabytes, got {text!r}") from None
    if not value >= 0:
        raise ValueError(f"${name} must be >= 0, got {text!r}")
    return value


def _whole(name: str, text: str, what: str) -> int:
    if not text.isdigit():
        raise ValueError(f"${name} must be a whole number of {what}, got {text!r}")
    return int(text)


#: field -> (environment variable, parser of its non-empty text). Unset or empty: the field's default.
VARIABLES: dict[str, tuple[str, Callable[[str, str], object]]] = {
    "cache_dir": ("FUSION_CACHE_DIR", _path),
    "checkpoint_dir": ("FUSION_CHECKPOINT_DIR", _path),
    "hover_memory_mb": ("FUSION_HOVER_MEMORY_MB", _megabytes),
    "hover_processes": ("FUSION_HOVER_PROCESSES", lambda n, t: _whole(n, t, "processes")),
    "dense_memory_mb": ("FUSION_DENSE_MEMORY_MB", lambda n, t: max(16, _whole(n, t, "MiB"))),
    "data_workers": ("FUSION_DATA_WORKERS", lambda n, t: _whole(n, t, "processes")),
    "plugins": ("FUSION_PLUGINS", lambda n, t: t),
}


@dataclass(frozen=True)
class Settings:
    """The shared settings (table in the module docstring); ``Settings()`` holds every default."""

    cache_dir: Path = DEFAULT_CACHE_DIR
    checkpoint_dir: Path = DEFAULT_CHECKPOINT_DIR
    hover_memory_mb: float = 1024.0
    hover_processes: int | None = None  # None: unset, the context's default
    dense_memory_mb: int | None = None  # None: unset, the engine's default
    data_workers: int = 0
    plugins: str = ""

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Every setting from ``environ`` (default ``os.environ``); raises ValueError naming a bad variable."""
        return cls(**{name: read(name, environ) for name in VARIABLES})

    @property
    def hover_memory_bytes(self) -> int:
        return int(self.hover_memory_mb * 2**20)

    def hover_workers(self, server: bool = False) -> int:
        """Hover worker processes: FUSION_HOVER_PROCESSES where set, else the context's default: a server's
        (``SERVER_HOVER_PROCESSES`` where there are 2 or more cores, else 0) or the library's (0: threads)."""
        if self.hover_processes is not None:
            return self.hover_processes
        if server:
            return SERVER_HOVER_PROCESSES if (os.cpu_count() or 1) >= 2 else 0
        return LIBRARY_HOVER_PROCESSES


_DEFAULTS = {f.name: f.default for f in fields(Settings)}


def read(name: str, environ: Mapping[str, str] | None = None):
    """The setting ``name`` (a field of ``Settings``) from ``environ`` (default ``os.environ``), checked."""
    variable, parse = VARIABLES[name]
    text = (os.environ if environ is None else environ).get(variable, "").strip()
    return parse(variable, text) if text else _DEFAULTS[name]
