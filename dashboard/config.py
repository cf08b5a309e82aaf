"""Dashboard settings, read from environment variables in one place.

    FUSION_DASH_HOST      address `python app.py` listens on        (127.0.0.1)
    FUSION_DASH_PORT      port                                       (8050)
    FUSION_DASH_DEBUG     1 = Dash debug mode (dev tools, reloader)  (0)
    FUSION_DASH_MODELS    comma-separated models selected by default
                          (weighted-average,funfusean,masknet,deepfuse,deeppedestrian)
    FUSION_DASH_PAIR      default bundled sample pair                (head-axial-090, colour PET)
    FUSION_CACHE_DIR      shared cache of the saliency service and of background jobs
                          (service default: ~/.cache/fusion-saliency; never on NFS)
    FUSION_DEVICE         torch device of the saliency service: cpu, cuda, cuda:N, or auto
                          (the GPU if there is one)                 (cpu)
    FUSION_DASH_THREADS   torch threads of a web process (1: hover answers are small crops, and
                          OpenMP threads spinning on a busy 2-core machine made them 60x slower)
    FUSION_JOB_THREADS    torch threads of a background dense job (1; 2 threads took 575 s instead of
                          10 s for one dense job while other processes kept both cores busy)
    FUSION_HOVER_PROCESSES  worker processes per web process that compute the hovers of several
                          models at once (default: 2 on a machine with 2 or more cores, else 0;
                          0: threads of the web process; gunicorn.conf.py sets one per core over
                          its web workers unless this is set). On the 2-core CPU, 2 gave 9.5 to 10.7 ms
                          per hover of all five models against 11.3 to 12.7 ms in threads (the GIL
                          is not shared). Each holds PyTorch, the models and their kept activations
                          (up to FUSION_HOVER_MEMORY_MB, default 1024).
    FUSION_DENSE_WORKERS  processes computing one whole-image request at once, its job included: local
                          processes, or with REDIS_URL the Celery workers it asks to help (default: the
                          usable cores). They run niced, below the web process and its hover workers.
    REDIS_URL             when set, background jobs run on Celery workers with this broker

  A shared server (see docs/deployment.md):
    FUSION_AUTH_FILE      file of ``user:bcrypt-hash`` lines (``python -m fusion users add``); when set,
                          every route but GET /healthz asks for sign-in     (unset: no sign-in)
    FUSION_URL_PREFIX     path the page is served under behind a reverse proxy, e.g. /fusion/   (/)
    FUSION_MAX_UPLOAD_MB  largest uploaded file, in MB (an HTTP body may hold two, base64-encoded) (20)
    FUSION_MAX_PIXELS     most pixels of one uploaded image, checked from its header before decoding
                          (1048576: 1024 x 1024)
    FUSION_MAX_MODELS     most models one request may name (unique registered names only)          (8)
    FUSION_JOBS_PER_USER  whole-image jobs one user may run at once; more wait in line           (1)
    FUSION_JOBS_TOTAL     whole-image jobs running at once on the server; more wait in line       (2)
                          (with Celery: at most the workers' total concurrency, else an admitted job
                          can wait in the broker past its start grace and be reported lost)
                          Without sign-in every request is the one user "local". The line, its
                          heartbeats and slots: dashboard/job_slots.py.
    FUSION_CACHE_MB       size limit of the shared disk cache (least recently used entries go)  (4096)
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from fusion.fanout import usable_workers

DEFAULT_MODELS = ("weighted-average", "funfusean", "masknet", "deepfuse", "deeppedestrian")


def default_hover_processes() -> int:
    """2 where there are at least two cores (hovers of several models in two worker processes), else 0.

    Two, not one per core: each worker prepares every shown model and keeps its activations, so
    memory grows with the workers, and five models (four of them networks) keep two busy.
    """
    return 2 if (os.cpu_count() or 1) >= 2 else 0


def _flag(value: str | None) -> bool:
    return (value or "").strip().lower() in ("1", "true", "yes", "on")


@dataclass(frozen=True)
class Config:
    host: str = "127.0.0.1"
    port: int = 8050
    debug: bool = False
    default_models: tuple[str, ...] = DEFAULT_MODELS
    default_pair: str | None = None
    cache_dir: str | None = None
    device: str = "cpu"
    redis_url: str | None = None
    web_threads: int = 1
    job_threads: int = 1
    hover_processes: int = field(default_factory=default_hover_processes)
    dense_workers: int = field(default_factory=usable_workers)
    #: Most points per model drawn in the G_MRI vs G_PET scatter (WebGL stays fluid).
    max_scatter_points: int = field(default=12_000)
    auth_file: str | None = None
    url_prefix: str = "/"
    max_upload_mb: float = 20.0
    max_pixels: int = 1024 * 1024
    max_models: int = 8
    jobs_per_user: int = 1
    jobs_total: int = 2
    cache_mb: int = 4096

    @property
    def max_body_bytes(self) -> int:
        """Largest HTTP request body: two uploads, base64-encoded (4/3), and room for the rest of a callback."""
        return int(2 * self.max_upload_mb * 2**20 * 4 / 3) + 2**20

    @property
    def cache_bytes(self) -> int:
        return int(self.cache_mb * 2**20)

    @property
    def jobs_dir(self) -> Path:
        """Where DiskcacheManager keeps background-job state (beside the service cache)."""
        root = Path(self.cache_dir).expanduser() if self.cache_dir else Path.home() / ".cache" / "fusion-saliency"
        return root / "dash-jobs"


def from_env(environ: dict | None = None) -> Config:
    """Build a Config from ``environ`` (default ``os.environ``); bad numbers raise ValueError."""
    env = os.environ if environ is None else environ
    models = tuple(m.strip() for m in env.get("FUSION_DASH_MODELS", "").split(",") if m.strip())
    def integer(name: str, default: int, what: str) -> int:
        raw = env.get(name, str(default))
        try:
            return int(raw)
        except ValueError:
            raise ValueError(f"{name} must be {what}, got {raw!r}") from None

    def device(spec: str) -> str:
        from fusion.devices import pick_device

        try:
            pick_device(spec)
        except ValueError as exc:
            raise ValueError(f"FUSION_DEVICE: {exc}") from None
        return spec

    def number(name: str, default: float, low: float) -> float:
        raw = env.get(name, "").strip() or str(default)
        try:
            value = float(raw)
        except ValueError:
            raise ValueError(f"{name} must be a number, got {raw!r}") from None
        if not value >= low:
            raise ValueError(f"{name} must be at least {low:g}, got {raw!r}")
        return value

    def whole(name: str, default: int, low: int) -> int:
        value = integer(name, default, "a whole number")
        if value < low:
            raise ValueError(f"{name} must be at least {low}, got {value}")
        return value

    def auth_file(raw: str | None) -> str | None:
        if not raw:
            return None
        path = Path(raw).expanduser()
        if not path.is_file():
            raise ValueError(f"FUSION_AUTH_FILE: {raw!r} is not a file (make one with "
                             "`python -m fusion users add NAME --file FILE`)")
        return str(path)

    def url_prefix(raw: str | None) -> str:
        prefix = (raw or "/").strip()
        prefix = "/" + prefix.strip("/") + "/" if prefix.strip("/") else "/"
        if any(c in prefix for c in "?#%\\ ") or "//" in prefix:
            raise ValueError(f"FUSION_URL_PREFIX must be a plain path such as /fusion/, got {raw!r}")
        return prefix

    return Config(
        host=env.get("FUSION_DASH_HOST", "127.0.0.1"),
        port=integer("FUSION_DASH_PORT", 8050, "a port number"),
        debug=_flag(env.get("FUSION_DASH_DEBUG")),
        default_models=models or DEFAULT_MODELS,
        default_pair=env.get("FUSION_DASH_PAIR") or None,
        cache_dir=env.get("FUSION_CACHE_DIR") or None,
        device=device(env.get("FUSION_DEVICE", "cpu")),
        redis_url=env.get("REDIS_URL") or None,
        web_threads=max(1, integer("FUSION_DASH_THREADS", 1, "a number of threads")),
        job_threads=max(1, integer("FUSION_JOB_THREADS", 1, "a number of threads")),
        hover_processes=max(0, integer("FUSION_HOVER_PROCESSES", default_hover_processes(), "a number of processes")),
        dense_workers=max(1, integer("FUSION_DENSE_WORKERS", usable_workers(), "a number of processes")),
        auth_file=auth_file(env.get("FUSION_AUTH_FILE")),
        url_prefix=url_prefix(env.get("FUSION_URL_PREFIX")),
        max_upload_mb=number("FUSION_MAX_UPLOAD_MB", 20, 0.01),
        max_pixels=whole("FUSION_MAX_PIXELS", 1024 * 1024, 64),
        max_models=whole("FUSION_MAX_MODELS", 8, 1),
        jobs_per_user=whole("FUSION_JOBS_PER_USER", 1, 1),
        jobs_total=whole("FUSION_JOBS_TOTAL", 2, 1),
        cache_mb=number("FUSION_CACHE_MB", 4096, 64),
    )
