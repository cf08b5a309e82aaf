"""Dashboard settings, read from environment variables in one place.

    FUSION_DASH_HOST      address `python app.py` listens on        (127.0.0.1)
    FUSION_DASH_PORT      port                                       (8050)
    FUSION_DASH_DEBUG     1 = Dash debug mode (dev tools, reloader)  (0)
    FUSION_DASH_MODELS    comma-separated models selected by default
                          (weighted-average,funfusean,masknet,deepfuse,deeppedestrian)
    FUSION_DASH_PAIR      default bundled sample pair                (the first axial pair)
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
                          0: threads of the web process). On the 2-core CPU, 2 gave 9.5 to 10.7 ms
                          per hover of all five models against 11.3 to 12.7 ms in threads (the GIL
                          is not shared). Each holds PyTorch, the models and their kept activations
                          (up to FUSION_HOVER_MEMORY_MB, default 1024).
    REDIS_URL             when set, background jobs run on Celery workers with this broker
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

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
    #: Most points per model drawn in the G_MRI vs G_PET scatter (WebGL stays fluid).
    max_scatter_points: int = field(default=12_000)

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
    )
