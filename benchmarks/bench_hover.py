"""Per-hover cost: exact Jacobian rows of one fused pixel for all five main models together.

    python benchmarks/bench_hover.py [--size 256] [--hovers 30] [--quick] [--device cuda]

Prints, measured in this run on this machine: the naive method (the reference's: one
full-image forward kept in memory, one full-image backward pass per pixel), ours
uncached (receptive-field crops through SaliencyService, a new pixel every hover) as
the service runs by default (replaying kept full-image activations only where
``replay_pays`` timed it faster), with replay always on (each convolution's output
window read from the kept forward pass, as the naive method keeps its forward pass)
and off, all five in worker processes (FUSION_HOVER_PROCESSES), all five in a process
whose window programs are not prepared (recorded at the first hover of each window
shape), ours cached (the same pixel again: the service's in-memory memo), and the ratios. The one-off cost per pair
of the kept forward pass is printed beside the naive method's forward pass.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import MAIN_MODELS, load_model, naive_backward_seconds, sample_pair, timed  # noqa: E402

from fusion.serving import SaliencyService  # noqa: E402


def hover_times(svc: SaliencyService, pair_id: str, pixels) -> tuple[dict[str, list[float]], list[float]]:
    """Seconds per hover: each model alone, then all five in one call (as the dashboard asks)."""
    per_model = {name: [] for name in MAIN_MODELS}
    for r, c in pixels:
        for name in MAIN_MODELS:
            per_model[name].append(timed(svc.pixel, [name], pair_id, r, c)[0])
    svc.clear_memory()  # recent hovers forgotten: every pixel computed again
    together = [timed(svc.pixel, MAIN_MODELS, pair_id, r, c)[0] for r, c in pixels]
    return per_model, together


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--hovers", type=int, default=30)
    parser.add_argument("--naive-pixels", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="10 hovers, 2 naive pixels")
    parser.add_argument("--processes", type=int, default=2, help="worker processes of the last line")
    parser.add_argument("--device", default="cpu", help="torch device of the services and the naive method "
                        "(worker processes run on the CPU only)")
    args = parser.parse_args()
    if args.quick:
        args.hovers, args.naive_pixels = 10, 2
    rng = np.random.default_rng(0)
    a, b = sample_pair(args.size)
    print(f"hover benchmark, {args.size} x {args.size}, torch {torch.__version__}, {args.device}, "
          f"{torch.get_num_threads()} threads")
    pixels = [(int(rng.integers(args.size)), int(rng.integers(args.size))) for _ in range(args.hovers)]
    with tempfile.TemporaryDirectory() as cache:
        services = {replay: SaliencyService(cache_dir=f"{cache}/{replay}", replay=replay, hover_processes=0,
                                            device=args.device)
                    for replay in ("auto", "always", "never")}
        for name in MAIN_MODELS:  # the bundled weights if present, else fresh ones
            model, kind = load_model(name)
            model.to(args.device)
            for p in model.parameters():
                p.requires_grad_(False)
            for svc in services.values():
                svc.use_model(name, model, f"bench-{name}")
            print(f"  {name:16s} weights: {kind}")
        # Worker processes build their models from the bundled checkpoints (a model without one is
        # hovered in this process).
        pooled = SaliencyService(cache_dir=f"{cache}/processes", hover_processes=args.processes)
        pair_ids = {replay: svc.put_pair(a, b) for replay, svc in services.items()}
        first = time.perf_counter()
        for name in MAIN_MODELS:
            services["auto"].planner.plan(name, args.size, args.size)
        print(f"probing, verification and timing the replay (once per model and image shape): "
              f"{time.perf_counter() - first:.2f} s")
        svc = services["always"]
        keep = {name: timed(svc.hovers.record, name, pair_ids["always"])[0] for name in MAIN_MODELS}
        print(f"kept forward passes (once per model and pair, made by the first hover): "
              f"{sum(keep.values()) * 1e3:.0f} ms for all five, {svc.hovers.records.nbytes / 2**20:.0f} MB")
        first = time.perf_counter()
        services["auto"].hovers.prepare(MAIN_MODELS, pair_ids["auto"])
        print(f"window programs of the interior and the edges (once per model and image shape, in the "
              f"background when the dashboard shows a pair): {time.perf_counter() - first:.2f} s")
        for replay in ("always", "never"):
            services[replay].hovers.prepare(MAIN_MODELS, pair_ids[replay])
        times = {replay: hover_times(services[replay], pair_ids[replay], pixels) for replay in services}
        pooled_pair = pooled.put_pair(a, b)
        pooled.prepare_hover(MAIN_MODELS, pooled_pair).result()  # as the dashboard does when it shows a pair
        together_pooled = [timed(pooled.pixel, MAIN_MODELS, pooled_pair, r, c)[0] for r, c in pixels]
        pooled_here = sorted(pooled.local_only)
        pooled.close()
        # Another process's first hovers: the verdicts come from the disk cache, no window program is
        # prepared (each is recorded at its first use).
        cold = SaliencyService(cache_dir=f"{cache}/auto", hover_processes=0, device=args.device)
        for name in MAIN_MODELS:
            cold.use_model(name, load_model(name)[0].to(args.device).requires_grad_(False), f"bench-{name}")
        cold_pair = cold.put_pair(a, b)
        for name in MAIN_MODELS:
            cold.planner.plan(name, args.size, args.size)
        together_cold = [timed(cold.pixel, MAIN_MODELS, cold_pair, r, c)[0] for r, c in pixels]
        cached = [timed(services["auto"].pixel, MAIN_MODELS, pair_ids["auto"], r, c)[0] for r, c in pixels]
        kept = services["auto"].hovers.kept_record
        replays = [name for name in MAIN_MODELS if kept(name, pair_ids["auto"]) is not None]
        print(f"replay used by default for: {', '.join(replays) or 'none'}")

        naive, naive_forward = {}, {}
        for name in MAIN_MODELS:
            naive_forward[name], naive[name] = timed(naive_backward_seconds, svc.model(name), a, b,
                                                     pixels[:args.naive_pixels])
            naive_forward[name] -= naive[name] * args.naive_pixels  # the forward pass and overheads

    median = lambda v: float(np.median(v))  # noqa: E731
    (ours, together), (always, together_always), (never, together_never) = (
        times[replay] for replay in ("auto", "always", "never"))
    print(f"\n{'model':16s} {'ours (ms)':>10s} {'replay':>8s} {'no replay':>10s} {'naive (ms)':>11s} {'ratio':>7s}"
          f" {'kept fwd (ms)':>14s} {'naive fwd':>10s}")
    for name in MAIN_MODELS:
        print(f"{name:16s} {median(ours[name]) * 1e3:10.2f} {median(always[name]) * 1e3:8.2f} "
              f"{median(never[name]) * 1e3:10.2f} {naive[name] * 1e3:11.1f} {naive[name] / median(ours[name]):6.0f}x "
              f"{keep[name] * 1e3:14.0f} {naive_forward[name] * 1e3:10.0f}")
    print(f"{'sum of the five':16s} " + " ".join(
        f"{sum(median(v) for v in per_model.values()) * 1e3:{width}.2f}"
        for per_model, width in ((ours, 10), (always, 8), (never, 10))))
    ours_all, naive_all, cached_all = median(together), sum(naive.values()), median(cached)
    print(f"{'all five':16s} {ours_all * 1e3:10.2f} {median(together_always) * 1e3:8.2f} "
          f"{median(together_never) * 1e3:10.2f} {naive_all * 1e3:11.1f} {naive_all / ours_all:6.0f}x")
    cold_all = median(together_cold)
    print(f"{'unprepared':16s} {cold_all * 1e3:10.2f} {'':8s} {'':10s} {naive_all * 1e3:11.1f} "
          f"{naive_all / cold_all:6.0f}x   (window programs recorded at first use)")
    pooled_all = median(together_pooled)
    print(f"{'in ' + str(args.processes) + ' processes':16s} {pooled_all * 1e3:10.2f} {'':8s} {'':10s} "
          f"{naive_all * 1e3:11.1f} {naive_all / pooled_all:6.0f}x"
          + (f"   (computed in this process: {', '.join(pooled_here)})" if pooled_here else ""))
    print(f"\nper hover, all five models: uncached {ours_all * 1e3:.1f} ms (goal <= 25 ms), "
          f"cached {cached_all * 1e3:.3f} ms (goal < 2 ms), naive {naive_all * 1e3:.0f} ms, "
          f"ratio {naive_all / ours_all:.0f}x (goal >= 100x); replay always "
          f"{median(together_always) * 1e3:.1f} ms, never {median(together_never) * 1e3:.1f} ms; "
          f"in {args.processes} worker processes {pooled_all * 1e3:.1f} ms ({naive_all / pooled_all:.0f}x); "
          f"without prepared window programs {cold_all * 1e3:.1f} ms ({naive_all / cold_all:.0f}x)")


if __name__ == "__main__":
    main()
