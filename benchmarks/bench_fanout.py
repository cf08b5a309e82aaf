"""Whole-image maps fanned out: wall time with N workers against one, in the same run, same maps.

    python benchmarks/bench_fanout.py                       # 4 networks, 256 x 256, --workers 1 vs 2
    python benchmarks/bench_fanout.py --size 512 --models deeppedestrian --workers 2
    python benchmarks/bench_fanout.py --celery --size 96 --models funfusean deepfuse   # Celery, 1 vs 2 workers

One planned cache is made first (each model probed and planned at this size, as a server does at
its start), then copied for every measured run, so that each run computes the same request from
the same state in a fresh process: ``fusion.fanout.run`` with ``--workers 1`` (the serial baseline:
one process, one thread) and with ``--workers N`` (this process and N - 1 helpers, one thread each).
``--celery``: a throw-away redis-server and 1, then N, ``celery -A app:celery_app worker -c 1``
processes compute while the measuring process only coordinates. Prints each wall time, the ratio,
the blocks of each model, the peak memory of the requesting process (and before it computes) and of its
largest helper against the memory budget of a block (``FUSION_DENSE_MEMORY_MB``), and the largest
difference between the runs' maps relative to each map's largest value.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
NETWORKS = ["funfusean", "masknet", "deepfuse", "deeppedestrian"]
MAPS = ("guidance_a", "guidance_b", "influence_a", "influence_b", "fused")


def pair(size: int):
    """The default sample (head-axial-090, 256 x 256), resized to ``size`` if needed."""
    from PIL import Image

    from fusion.data import load_sample

    sample = load_sample("head-axial-090")
    if sample.mri.shape == (size, size):
        return sample.mri, sample.pet
    resize = [np.asarray(Image.fromarray(x).resize((size, size), Image.BICUBIC)).clip(0, 1) for x in
              (sample.mri.astype(np.float32), sample.pet.astype(np.float32))]
    return resize[0], resize[1]


def planned_cache(directory: Path, models: list[str], size: int) -> None:
    from fusion.serving import SaliencyService

    service = SaliencyService(cache_dir=directory)
    pair_id = service.put_pair(*pair(size))
    for name in models:
        service.dense_method(name, pair_id)  # probes and plans (verification) once, stored in the cache


class PeakMemory:
    """The largest peak resident memory (VmHWM) of any process below this one (the helpers, forked by a
    forkserver, are grandchildren: ``getrusage`` does not see them), sampled every ``every`` s (Linux)."""

    def __init__(self, every: float = 0.5):
        import threading

        self.peaks: dict[int, float] = {}
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.sample, args=(every,), daemon=True)
        self.thread.start()

    @staticmethod
    def descendants(root: int) -> list[int]:
        parents = {}
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                try:
                    parents[int(entry.name)] = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
                except (OSError, IndexError, ValueError):
                    continue
        found, frontier = [], [root]
        while frontier:
            kids = [pid for pid, parent in parents.items() if parent in frontier]
            found += kids
            frontier = kids
        return found

    def sample(self, every: float) -> None:
        while not self.stop.wait(every):
            for pid in self.descendants(os.getpid()):
                try:
                    status = Path(f"/proc/{pid}/status").read_text()
                except OSError:
                    continue
                for line in status.splitlines():
                    if line.startswith("VmHWM:"):
                        self.peaks[pid] = max(self.peaks.get(pid, 0.0), int(line.split()[1]) / 1024)

    def largest_mb(self) -> float:
        self.stop.set()
        self.thread.join()
        return max(self.peaks.values(), default=0.0)


def child(args) -> None:
    """One measured run in this fresh process; prints JSON."""
    import resource

    import torch

    from fusion import fanout
    from fusion.serving import SaliencyService

    torch.set_num_threads(1)
    service = SaliencyService(cache_dir=args.cache)
    pair_id = service.put_pair(*pair(args.size))
    units = [(m, pair_id) for m in args.models]
    kwargs = {}
    if args.redis:
        from celery import Celery

        from dashboard.dense_job import HELPER_TASK

        sender = Celery("bench", broker=args.redis, backend=args.redis)
        settings = fanout.service_settings(service)

        def start(request, count):
            for _ in range(count):
                sender.send_task(HELPER_TASK, args=[settings, request.board.spec, request.id])

        kwargs = dict(board=fanout.RedisBoard(args.redis), start_helpers=start, participate=False)
    from fusion.saliency.dense import memory_budget_bytes

    for name in args.models:
        service.model(name)
    tasks = fanout.plan_tasks(service, units, args.workers)
    blocks = {name: sum(task.model == name for task in tasks) for name in args.models}
    before_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    helpers = PeakMemory()
    start = time.perf_counter()
    outcome = fanout.run(service, units, workers=args.workers, **kwargs)
    seconds = time.perf_counter() - start
    print(json.dumps({"seconds": seconds, "failed": [u["error"] for u in outcome.values() if u["error"]],
                      "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                      "children_peak_rss_mb": helpers.largest_mb(), "before_rss_mb": before_mb, "blocks": blocks,
                      "budget_mb": memory_budget_bytes() / 2**20}))


def measured(cache: Path, args, workers: int, redis: str | None = None) -> dict:
    command = [sys.executable, __file__, "--child", "--cache", str(cache), "--size", str(args.size),
               "--workers", str(workers), "--models", *args.models] + (["--redis", redis] if redis else [])
    done = subprocess.run(command, capture_output=True, text=True, cwd=ROOT)
    if done.returncode != 0:
        raise RuntimeError(done.stderr[-3000:])
    result = json.loads(done.stdout.strip().splitlines()[-1])
    if result["failed"]:
        raise RuntimeError(f"failed: {result['failed']}")
    return result


def compare(first: Path, second: Path, args) -> float:
    """Largest |difference| between the two runs' maps, relative to each map's largest value."""
    from fusion.serving import SaliencyService

    worst = 0.0
    a, b = pair(args.size)
    for name in args.models:
        results = []
        for cache in (first, second):
            service = SaliencyService(cache_dir=cache)
            results.append(service.cached_dense(name, service.put_pair(a, b)))
        for key in MAPS:
            want = getattr(results[0], key)
            worst = max(worst, float(np.abs(getattr(results[1], key) - want).max() / max(np.abs(want).max(), 1e-30)))
    return worst


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Workers:
    """redis-server and ``count`` Celery workers on loopback, sharing ``cache``."""

    def __init__(self, root: Path, cache: Path, count: int):
        self.url = f"redis://127.0.0.1:{free_port()}/0"
        port = self.url.rsplit(":", 1)[1].split("/")[0]
        self.procs = [subprocess.Popen(["redis-server", "--port", port, "--bind", "127.0.0.1", "--save", "",
                                        "--appendonly", "no", "--dir", str(root)], stdout=subprocess.DEVNULL)]
        env = {**os.environ, "REDIS_URL": self.url, "FUSION_CACHE_DIR": str(cache), "FUSION_DEVICE": "cpu"}
        logs = []
        for k in range(count):
            log = root / f"worker-{k}.log"
            logs.append(log)
            self.procs.append(subprocess.Popen(
                [sys.executable, "-m", "celery", "-A", "app:celery_app", "worker", "--concurrency=1", "--loglevel=INFO",
                 "--without-gossip", "--without-mingle", "--without-heartbeat", "--hostname", f"bench{k}@%h"],
                cwd=ROOT, env=env, stdout=open(log, "w"), stderr=subprocess.STDOUT))
        end = time.time() + 300
        while not all("ready" in log.read_text(errors="replace") for log in logs):
            if time.time() > end:
                raise RuntimeError("the Celery workers did not start")
            time.sleep(0.5)

    def close(self) -> None:
        for proc in reversed(self.procs):
            proc.terminate()
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=NETWORKS)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--celery", action="store_true", help="Celery workers on loopback instead of processes here")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--cache", help=argparse.SUPPRESS)
    parser.add_argument("--redis", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(args)
    root = Path(tempfile.mkdtemp(prefix="fusion-bench-fanout-"))
    try:
        base = root / "planned"
        planned_cache(base, args.models, args.size)
        runs = {}
        for workers in (1, args.workers):
            cache = root / f"run-{workers}"
            shutil.copytree(base, cache)
            if args.celery:
                stack = Workers(root, cache, workers)
                try:
                    runs[workers] = measured(cache, args, workers, stack.url)
                finally:
                    stack.close()
            else:
                runs[workers] = measured(cache, args, workers)
            run = runs[workers]
            print(f"workers {workers}: {run['seconds']:.1f} s, blocks {run['blocks']}; peak RSS "
                  f"{run['peak_rss_mb']:.0f} MB (before computing {run['before_rss_mb']:.0f} MB; largest helper "
                  f"{run['children_peak_rss_mb']:.0f} MB; block memory budget {run['budget_mb']:.0f} MB)", flush=True)
        ratio = runs[args.workers]["seconds"] / runs[1]["seconds"]
        difference = compare(root / "run-1", root / f"run-{args.workers}", args)
        where = "Celery workers" if args.celery else "processes"
        print(f"{len(args.models)} models, {args.size} x {args.size}, {where}: {args.workers} vs 1 -> "
              f"ratio {ratio:.3f}; largest map difference {difference:.2e} of the map's largest value")
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
