"""First hover of a pair never seen, on a freshly started server with a fresh cache.

    python benchmarks/bench_first_hover.py [--workers 2] [--sizes 256,320] [--settle 90]

Starts ``gunicorn app:server`` (the repository's gunicorn.conf.py) on loopback with an empty
cache directory, stores new simulated pairs (not bundled samples) of each size in that cache as an
upload would, and asks ``/fs-api/pixel`` for all five main models at once, as the page does on
the first hover. Prints, measured in this run:
  - the first hover's wall time per size, and whether it is exact (each model's value, dF/dMRI
    and dF/dPET at the pixel, and its MRI share against plain full-image autograd here);
  - hovers every second after that until the fast path is planned (the background planning
    competes with them for the cores), and the steady hover latency once planned;
  - the first hover of a server killed and started again on the same cache;
  - the baseline, measured in this run: the same first hover through a ``SaliencyService`` that
    plans inline (in the request, as before), on its own fresh cache.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import MAIN_MODELS  # noqa: E402

import fusion  # noqa: E402
from fusion.data import simulate_pair  # noqa: E402
from fusion.saliency import Method, pixel_jacobians  # noqa: E402
from fusion.serving import SaliencyService  # noqa: E402


def new_pair(size: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A simulated pair that is none of the bundled samples (another slice, noise of its own)."""
    a, b = simulate_pair("axial", 60 + seed % 50, np.random.default_rng(seed), size=size)
    return fusion.io.check_pair(a.astype(np.float32), b.astype(np.float32))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def get(url: str, timeout: float = 120) -> tuple[float, dict]:
    start = time.perf_counter()
    with urllib.request.urlopen(url, timeout=timeout) as answer:
        body = json.loads(answer.read())
    return time.perf_counter() - start, body


def hover_url(base: str, pair_id: str, row: int, col: int) -> str:
    return f"{base}/fs-api/pixel?pair={pair_id}&models={','.join(MAIN_MODELS)}&row={row}&col={col}"


def exactness(body: dict, a, b, row: int, col: int, models: dict) -> float:
    """Largest relative difference of the answer's numbers from full-image autograd, over the models."""
    worst = 0.0
    for name, model in models.items():
        entry = body["models"][name]
        if "error" in entry:
            raise SystemExit(f"{name}: {entry['error']}")
        (want,) = pixel_jacobians(model, a, b, [(row, col)], method=Method.FULL_IMAGE)
        total_a, total_b = np.abs(want.ja).sum(), np.abs(want.jb).sum()
        share = total_a / (total_a + total_b) if total_a + total_b > 0 else 0.5
        scale = max(np.abs(want.ja).max(), np.abs(want.jb).max(), 1e-12)
        worst = max(worst, abs(entry["value"] - want.value), abs(entry["dmri"] - want.ja[row, col]) / scale,
                    abs(entry["dpet"] - want.jb[row, col]) / scale, abs(entry["share"] - share))
    return worst


def start_server(cache: Path, workers: int) -> tuple[subprocess.Popen, str]:
    port = free_port()
    env = {**os.environ, "FUSION_CACHE_DIR": str(cache), "FUSION_DASH_PORT": str(port), "OMP_NUM_THREADS": "1"}
    server = subprocess.Popen([sys.executable, "-m", "gunicorn", "app:server", "-w", str(workers)], cwd=ROOT,
                              env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(base + "/healthz", timeout=2).read()
            return server, base
        except OSError:
            time.sleep(0.2)
    server.kill()
    raise SystemExit("the server did not start within 180 s")


def inline_first_hover(size: int) -> float:
    """The baseline: the first five-model hover with planning in the request, on a fresh cache."""
    with tempfile.TemporaryDirectory() as cache:
        svc = SaliencyService(cache_dir=cache, planning="inline", hover_processes=0)
        try:
            pair_id = svc.put_pair(*new_pair(size, seed=50 + size))
            start = time.perf_counter()
            svc.pixel(MAIN_MODELS, pair_id, size // 2, size // 3)
            return time.perf_counter() - start
        finally:
            svc.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=2, help="gunicorn web workers")
    parser.add_argument("--sizes", default="256,320", help="image sides, comma-separated")
    parser.add_argument("--settle", type=float, default=90, help="seconds of hovers after the first one")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    models = {name: fusion.create_model(name) for name in MAIN_MODELS}
    with tempfile.TemporaryDirectory() as tmp:
        cache = Path(tmp) / "cache"
        store = SaliencyService(cache_dir=cache, hover_processes=0)  # stores pairs as an upload does
        pairs = {size: new_pair(size, seed=size) for size in sizes}
        ids = {size: store.put_pair(*pairs[size]) for size in sizes}
        store.close()
        started = time.perf_counter()
        server, base = start_server(cache, args.workers)
        print(f"server up after {time.perf_counter() - started:.1f} s ({args.workers} web workers, fresh cache)")
        try:
            for size in sizes:
                a, b = pairs[size]
                row, col = size // 2, size // 3
                seconds, body = get(hover_url(base, ids[size], row, col))
                error = exactness(body, a, b, row, col, models)
                print(f"{size} x {size}: first five-model hover {seconds:.2f} s, largest difference from "
                      f"full-image autograd {error:.1e}, methods "
                      f"{ {m: body['models'][m]['method'] for m in MAIN_MODELS} }")
            rng = np.random.default_rng(0)
            for size in sizes:
                times, t0 = [], time.perf_counter()
                while time.perf_counter() - t0 < args.settle / len(sizes):
                    row, col = (int(x) for x in rng.integers(0, size, 2))
                    seconds, body = get(hover_url(base, ids[size], row, col))
                    times.append((time.perf_counter() - t0, seconds))
                    time.sleep(max(0.0, 1.0 - seconds))
                early = [s for t, s in times if t < 10]
                late = [s for t, s in times[-10:]]
                print(f"{size} x {size}: hovers in the first 10 s after it: median {np.median(early) * 1e3:.0f} ms, "
                      f"max {max(early) * 1e3:.0f} ms; last 10 hovers: median {np.median(late) * 1e3:.0f} ms, "
                      f"max {max(late) * 1e3:.0f} ms")
        finally:
            os.killpg(server.pid, signal.SIGKILL)  # as a crash would: nothing is closed
            server.wait(60)
        server, base = start_server(cache, args.workers)
        try:
            for size in sizes:
                row, col = size // 3, size // 2
                seconds, body = get(hover_url(base, ids[size], row, col))
                error = exactness(body, *pairs[size], row, col, models)
                print(f"{size} x {size}: first hover after a restart on the same cache {seconds:.2f} s "
                      f"(largest difference {error:.1e})")
        finally:
            os.killpg(server.pid, signal.SIGTERM)
            server.wait(60)
    for size in sizes:
        print(f"baseline {size} x {size}: first five-model hover planning inline (before) "
              f"{inline_first_hover(size):.2f} s")


if __name__ == "__main__":
    main()
