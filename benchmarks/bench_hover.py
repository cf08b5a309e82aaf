"""Per-hover cost: exact Jacobian rows of one fused pixel for all five main models together.

    python benchmarks/bench_hover.py [--size 256] [--hovers 30] [--quick]

Prints, measured in this run on this machine: the naive method (the reference's: one
full-image forward kept in memory, one full-image backward pass per pixel), ours
uncached (receptive-field crops through SaliencyService, a new pixel every hover) and
ours cached (the same pixel again: the service's in-memory memo), and the ratios.
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

from _common import MAIN_MODELS, load_model, naive_backward_seconds, sample_pair  # noqa: E402

from fusion.service import SaliencyService  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--hovers", type=int, default=30)
    parser.add_argument("--naive-pixels", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="10 hovers, 2 naive pixels")
    args = parser.parse_args()
    if args.quick:
        args.hovers, args.naive_pixels = 10, 2
    rng = np.random.default_rng(0)
    a, b = sample_pair(args.size)
    print(f"hover benchmark, {args.size} x {args.size}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads")
    with tempfile.TemporaryDirectory() as cache:
        svc = SaliencyService(cache_dir=cache)
        for name in MAIN_MODELS:  # the bundled weights if present, else fresh ones
            model, kind = load_model(name)
            for p in model.parameters():
                p.requires_grad_(False)
            svc._models[name], svc._hashes[name] = model, f"bench-{name}"
            print(f"  {name:16s} weights: {kind}")
        pair_id = svc.put_pair(a, b)
        t0 = time.perf_counter()
        svc.pixel(MAIN_MODELS, pair_id, 0, 0)  # first use: probe fields, verify crops at this shape
        print(f"first hover (probing + verification, once per model and shape): {time.perf_counter() - t0:.2f} s")

        pixels = [(int(rng.integers(args.size)), int(rng.integers(args.size))) for _ in range(args.hovers)]
        per_model = {name: [] for name in MAIN_MODELS}
        for r, c in pixels:  # one model at a time
            for name in MAIN_MODELS:
                s = time.perf_counter()
                svc.pixel([name], pair_id, r, c)
                per_model[name].append(time.perf_counter() - s)
        svc._pixels.data.clear()
        together = []
        for r, c in pixels:  # all five in one call, as the dashboard asks (models run two at a time)
            start = time.perf_counter()
            svc.pixel(MAIN_MODELS, pair_id, r, c)
            together.append(time.perf_counter() - start)
        cached = []
        for r, c in pixels:
            start = time.perf_counter()
            svc.pixel(MAIN_MODELS, pair_id, r, c)
            cached.append(time.perf_counter() - start)

        naive = {}
        for name in MAIN_MODELS:
            naive[name] = naive_backward_seconds(svc.model(name), a, b, pixels[:args.naive_pixels])

    print(f"\n{'model':16s} {'ours (ms)':>10s} {'naive (ms)':>11s} {'ratio':>8s}")
    for name in MAIN_MODELS:
        ours = float(np.median(per_model[name]))
        print(f"{name:16s} {ours * 1e3:10.2f} {naive[name] * 1e3:11.1f} {naive[name] / ours:8.0f}x")
    print(f"{'sum of the five':16s} {sum(float(np.median(v)) for v in per_model.values()) * 1e3:10.2f}")
    ours_all, naive_all, cached_all = float(np.median(together)), sum(naive.values()), float(np.median(cached))
    print(f"{'all five':16s} {ours_all * 1e3:10.2f} {naive_all * 1e3:11.1f} {naive_all / ours_all:8.0f}x")
    print(f"\nper hover, all five models: uncached {ours_all * 1e3:.1f} ms (goal <= 25 ms), "
          f"cached {cached_all * 1e3:.3f} ms (goal < 2 ms), naive {naive_all * 1e3:.0f} ms, "
          f"ratio {naive_all / ours_all:.0f}x (goal >= 100x)")


if __name__ == "__main__":
    main()
