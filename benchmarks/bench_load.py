"""Many users hovering at once against gunicorn with the repository's gunicorn.conf.py, on loopback.

    python benchmarks/bench_load.py                       # 20 users, 60 s, fresh cache
    python benchmarks/bench_load.py --kill-worker         # SIGKILL one web worker half-way
    python benchmarks/bench_load.py --users 5 --duration 20 --gunicorn-args "--workers 3"
    python benchmarks/bench_load.py --env FUSION_HOVER_PROCESSES=1 --duration 180

The server gets a fresh temporary cache. The dashboard's default pair (``default_pair_key``:
head-axial-090, a colour PET; runs before the head samples used axial-095; both 256 x 256, and
hovers see Y alone) is warmed first: one hover, then no
requests until the server's processes are quiet (a server started before its users come: it plans
the models and prepares the default pair in the background; at most ``--idle`` seconds), then load
that is not counted, for at least ``--warmup`` seconds and until the rate of three 5 s
chunks in a row settles (within 10 %; the engine plans and prepares in the background meanwhile).
The baseline is one user hovering alone for ``--baseline`` seconds in the same run. Then every
user hovers continuously for ``--duration`` seconds, like the page does: one request in flight
per user, the next one sent as soon as the answer is in, each asking for every model (the query
of assets/fs_hover.js). Each user moves like a mouse over the fused image: to a neighbouring
pixel (1 to 3 pixels away) most of the time, sometimes a jump anywhere.

A request fails when it gets no HTTP answer, a status other than 200, an answer holding an
"error" (for the whole request or one model), or fewer Jacobian images than asked for.
Prints hovers/s, latency p50 / p95 / max, failures, the CPU seconds the server spent per hover,
the server's memory every 10 s (the gunicorn master, its web workers and everything they
started: hover worker processes and their forkserver), and the load average of the machine
(other programs share its cores). The server and its processes are handled by ``_server.py``.
"""
from __future__ import annotations

import argparse
import http.client
import os
import random
import shlex
import shutil
import sys
import tempfile
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _server import (  # noqa: E402
    ROOT,
    cpu_seconds,
    free_port,
    kill_one_worker,
    monitor,
    start_gunicorn,
    stop,
    wait_until_quiet,
    web_workers,
)

DEFAULT_MODELS = "weighted-average,funfusean,masknet,deepfuse,deeppedestrian"


def pair_id_of(sample: str) -> str:
    """The id the page sends for a bundled sample (its content hash, as the service stores it)."""
    from fusion.data import load_sample
    from fusion.io import check_colour_pair
    from fusion.serving import pair_hash

    pair = load_sample(sample)
    pair = check_colour_pair(pair.mri, pair.pet, pair.pet_chroma, pair.pet_range)  # as put_pair validates it
    return pair_hash(pair.mri, pair.pet, pair.pet_chroma, pair.pet_range)  # a colour PET's chroma included


def hover_path(pair: str, models: str, row: int, col: int, seq: int) -> str:
    query = urllib.parse.urlencode({"pair": pair, "models": models, "row": row, "col": col, "jac": "signed",
                                    "shared": "0", "gamma": 1, "win": "rf", "seq": seq})
    return "/fs-api/pixel?" + query


@dataclass
class Tally:
    """What the users saw: (end time, latency) of answered hovers, failures with their time and reason."""
    ok: list[tuple[float, float]] = field(default_factory=list)
    failed: list[tuple[float, str]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    start: float = 0.0
    until: float = 0.0  # users send no request after this; answers that come later are not in the rate


def check(status: int, body: bytes, n_models: int) -> str | None:
    """Why an answer is a failure, or None. Base64 never holds a quote, so '"error"' means an error key."""
    if status != 200:
        return f"HTTP {status}"
    if b'"error"' in body:
        return "error in answer: " + body[:200].decode(errors="replace")
    if body.count(b'"data:image/png;base64,') != 2 * n_models:
        return "missing Jacobian images"
    return None


class Mouse:
    """A pixel that moves like a hovering mouse: small steps, sometimes a jump."""

    def __init__(self, h: int, w: int, rng: random.Random, jump: float = 0.05):
        self.h, self.w, self.rng, self.jump = h, w, rng, jump
        self.row, self.col = rng.randrange(h), rng.randrange(w)

    def next(self) -> tuple[int, int]:
        if self.rng.random() < self.jump:
            self.row, self.col = self.rng.randrange(self.h), self.rng.randrange(self.w)
        else:
            step = [-3, -2, -1, 1, 2, 3]
            self.row = min(max(self.row + self.rng.choice(step), 0), self.h - 1)
            self.col = min(max(self.col + self.rng.choice(step), 0), self.w - 1)
        return self.row, self.col


def user(port: int, pair: str, models: str, shape: tuple[int, int], seed: int, until: float, tally: Tally,
         timeout: float = 60.0) -> None:
    """One user hovering until ``until``: one keep-alive connection (re-opened when the server closes it)."""
    rng = random.Random(seed)
    mouse, n_models, seq = Mouse(*shape, rng), len(models.split(",")), 0
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    while time.time() < until:
        row, col = mouse.next()
        seq += 1
        start = time.perf_counter()
        try:
            conn.request("GET", hover_path(pair, models, row, col, seq))
            response = conn.getresponse()
            problem = check(response.status, response.read(), n_models)
        except (OSError, http.client.HTTPException) as exc:
            problem = f"{type(exc).__name__}: {exc}"
            conn.close()
        end = time.perf_counter()
        with tally.lock:
            if problem is None:
                tally.ok.append((time.time(), 1000 * (end - start)))
            else:
                tally.failed.append((time.time(), problem))
        if problem is not None:
            time.sleep(0.05)  # the page's next hover comes with the next mouse move
    conn.close()


def run_users(n: int, seconds: float, port: int, pair: str, models: str, shape, seed: int) -> Tally:
    tally = Tally(start=time.time())
    until = tally.until = tally.start + seconds
    threads = [threading.Thread(target=user, args=(port, pair, models, shape, seed * 1000 + k, until, tally),
                                daemon=True) for k in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return tally


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    k = (len(ordered) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def summary(tally: Tally) -> dict:
    """Hovers/s (answers that came by the end of the run, over its length), latency over all answers."""
    latencies = [ms for _, ms in tally.ok]
    in_time = sum(end <= tally.until for end, _ in tally.ok)
    return {"hovers": len(latencies), "rate": in_time / (tally.until - tally.start), "failed": len(tally.failed),
            "p50": percentile(latencies, 0.5), "p95": percentile(latencies, 0.95),
            "max": max(latencies, default=float("nan"))}


def warm(port: int, pair_key: str, pair: str, models: str, timeout: float) -> float:
    """The first hover of the sample by its key (stores the pair), then by its id; seconds taken."""
    start = time.perf_counter()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    for key in (pair_key, pair):
        conn.request("GET", hover_path(key, models, 100, 100, 0))
        response = conn.getresponse()
        problem = check(response.status, response.read(), len(models.split(",")))
        if problem:
            raise RuntimeError(f"warming hover failed: {problem}")
    conn.close()
    return time.perf_counter() - start


def main() -> None:  # noqa: PLR0915 - one linear script
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--users", type=int, default=20)
    parser.add_argument("--duration", type=float, default=60.0, help="seconds of measured load")
    parser.add_argument("--warmup", type=float, default=30.0,
                        help="least seconds of load before measuring (more until the rate settles, at most 5x)")
    parser.add_argument("--idle", type=float, default=240.0,
                        help="most seconds to wait, without requests, for the server's background work to end")
    parser.add_argument("--baseline", type=float, default=10.0, help="seconds of one user alone (the baseline)")
    parser.add_argument("--models", default=DEFAULT_MODELS)
    parser.add_argument("--memory-every", type=float, default=10.0, help="seconds between memory samples")
    parser.add_argument("--kill-worker", action="store_true", help="SIGKILL one web worker half-way")
    parser.add_argument("--port", type=int, default=0, help="default: a free port")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--env", action="append", default=[], metavar="NAME=VALUE", help="server environment")
    parser.add_argument("--gunicorn-args", default="", help="extra gunicorn arguments (override the conf)")
    parser.add_argument("--keep-log", help="copy the server's log (access log included) here")
    args = parser.parse_args()

    sys.path.insert(0, str(ROOT))
    from dashboard.backend import default_pair_key

    pair_key = default_pair_key()
    pair = pair_id_of(pair_key.split(":", 1)[1])
    from fusion.data import load_sample

    shape = load_sample(pair_key.split(":", 1)[1])[0].shape
    port = args.port or free_port()
    tmp = Path(tempfile.mkdtemp(prefix="fusion-load-"))
    log_path = tmp / "gunicorn.log"
    extra = dict(item.split("=", 1) for item in args.env)
    load_before = os.getloadavg()
    proc = start_gunicorn(port, str(tmp / "cache"), log_path, extra, shlex.split(args.gunicorn_args))
    try:
        workers = web_workers(proc.pid)
        print(f"gunicorn (master {proc.pid}, {len(workers)} web workers) on 127.0.0.1:{port}, "
              f"fresh cache; {os.cpu_count()} cores; load average before {load_before[0]:.2f} "
              f"{load_before[1]:.2f} {load_before[2]:.2f}")
        first = warm(port, pair_key, pair, args.models, timeout=900)
        print(f"first hover of {pair_key} ({shape[0]} x {shape[1]}, {len(args.models.split(','))} models): "
              f"{first:.1f} s")
        hover = extra.get("FUSION_HOVER_PROCESSES", os.environ.get("FUSION_HOVER_PROCESSES", "")).strip() != "0"
        settled = wait_until_quiet(proc.pid, args.idle, hover)  # a server started before its users come
        print(f"server quiet (background planning and preparation done) after {settled:.0f} s"
              if settled is not None else f"server still busy after {args.idle:.0f} s without requests")
        rates, start = [], time.time()
        while True:  # until the rate settles: the engine plans and prepares in the background meanwhile
            chunk = summary(run_users(args.users, 5, port, pair, args.models, shape, args.seed + 10 + len(rates)))
            rates.append(chunk["rate"])
            settled = len(rates) >= 3 and min(rates[-3:]) >= 0.9 * max(rates[-3:])
            if (time.time() - start >= args.warmup and settled) or time.time() - start >= 5 * args.warmup:
                break
        print(f"warm-up, {args.users} users, not counted: hovers/s per 5 s {' '.join(f'{r:.0f}' for r in rates)}")
        base = summary(run_users(1, args.baseline, port, pair, args.models, shape, args.seed + 2))
        print(f"baseline, 1 user for {args.baseline:.0f} s: {base['rate']:.1f} hovers/s, p50 {base['p50']:.0f} ms,"
              f" p95 {base['p95']:.0f} ms, {base['failed']} failed")

        stop_event, rows, kill = threading.Event(), [], {}
        watch = threading.Thread(target=monitor, args=(proc.pid, args.memory_every, stop_event, rows), daemon=True)
        watch.start()
        killer = None
        if args.kill_worker:
            killer = threading.Thread(target=kill_one_worker, args=(proc.pid, args.duration / 2, kill), daemon=True)
            killer.start()
        cpu_before, client_before = cpu_seconds(proc.pid), time.process_time()
        tally = run_users(args.users, args.duration, port, pair, args.models, shape, args.seed + 3)
        cpu_after, client_cpu = cpu_seconds(proc.pid), time.process_time() - client_before
        stop_event.set()
        watch.join()
        if killer is not None:
            killer.join()
        load = summary(tally)
        used = {"master": 0.0, "web": 0.0, "hover": 0.0}
        for pid, (kind, seconds) in cpu_after.items():
            used[kind] += seconds - cpu_before.get(pid, (kind, 0.0))[1]
        server_cpu = sum(used.values())

        print(f"{args.users} users for {args.duration:.0f} s: {load['rate']:.1f} hovers/s "
              f"({load['rate'] / base['rate']:.2f}x one user alone), p50 {load['p50']:.0f} ms "
              f"({load['p50'] / base['p50']:.1f}x), p95 {load['p95']:.0f} ms, max {load['max']:.0f} ms, "
              f"{load['failed']} failed")
        per = 1000 / max(load["hovers"], 1)
        print(f"  server CPU {per * server_cpu:.1f} ms per hover (web workers {per * used['web']:.1f}, hover "
              f"processes {per * used['hover']:.1f}), {server_cpu / args.duration:.2f} cores busy; load generator "
              f"{client_cpu / args.duration:.2f} cores")
        reasons = {}
        for _, why in tally.failed:
            reasons[why[:120]] = reasons.get(why[:120], 0) + 1
        for why, count in sorted(reasons.items(), key=lambda kv: -kv[1]):
            print(f"  failed x{count}: {why}")
        print("  server memory, MB: RSS sum, PSS sum (web workers + what they started), processes, load average")
        for t, m, la in rows:
            print(f"    {t:4.0f} s: {m['rss']:6.0f}  {m['pss']:6.0f} ({m['pss_web']:5.0f} + {m['pss_hover']:5.0f})  "
                  f"{m['n']:2d}  {la:5.2f}")
        if args.kill_worker:
            if "error" in kill:
                print(f"  kill: {kill['error']}")
            else:
                after = [why for t, why in tally.failed if t >= kill["t"] - 0.5]
                print(f"  web worker {kill['pid']} killed at {args.duration / 2:.0f} s: replaced after "
                      f"{kill.get('replaced_s', float('nan')):.2f} s, {len(after)} failed requests from then on")
        load_after = os.getloadavg()
        print(f"  load average after {load_after[0]:.2f} {load_after[1]:.2f} {load_after[2]:.2f}")
        errors = (f"at most 2 failed with a worker killed {'yes' if load['failed'] <= 2 else 'NO'}" if args.kill_worker
                  else f"0 errors {'yes' if load['failed'] == 0 else 'NO'}")
        print(f"goal (issue 11; 20 users, 60 s): {errors}, >= 70 hovers/s {'yes' if load['rate'] >= 70 else 'NO'}, "
              f"p95 <= 350 ms {'yes' if load['p95'] <= 350 else 'NO'}")
    finally:
        stop(proc)
        if args.keep_log:
            shutil.copy(log_path, args.keep_log)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
