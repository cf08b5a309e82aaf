"""Whole-image Jacobian per model: coloured backward passes against one backward pass per pixel.

    python benchmarks/bench_dense.py [--size 256] [--models funfusean deepfuse] [--quick]

Ours is measured fully (dense_jacobian: one shared forward, rows x cols coloured backward
passes); the naive method (one full-image backward pass per pixel, the forward kept) is
extrapolated from a timed sample of pixels to all H x W pixels. The ideal ratio is
H x W / (rows x cols) passes. On a 2-core CPU the heavy models take minutes each at
256 x 256; --quick runs 64 x 64.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import MAIN_MODELS, load_model, naive_backward_seconds, sample_pair, timed  # noqa: E402

from fusion.saliency import analyse, dense_jacobian, plan  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--models", nargs="*", default=MAIN_MODELS[1:])
    parser.add_argument("--naive-pixels", type=int, default=4)
    parser.add_argument("--quick", action="store_true", help="64 x 64, 2 naive pixels")
    args = parser.parse_args()
    if args.quick:
        args.size, args.naive_pixels = 64, 2
    a, b = sample_pair(args.size)
    n = args.size * args.size
    print(f"dense benchmark, {args.size} x {args.size}, torch {torch.__version__}, {torch.get_num_threads()} threads")
    print(f"{'model':16s} {'RF':>4s} {'passes':>7s} {'ours (s)':>9s} {'naive (s, extrap.)':>19s} "
          f"{'ratio':>7s} {'ideal':>7s} {'of ideal':>9s} method")
    for name in args.models:
        model, _ = load_model(name)
        for p in model.parameters():
            p.requires_grad_(False)
        plan(model, args.size, args.size)  # probe + verify once, as the service does (not timed)
        field = analyse(model).clipped(args.size, args.size)
        passes = min(field.rows, args.size) * min(field.cols, args.size)
        seconds, dense = timed(dense_jacobian, model, a, b)
        pixels = [(args.size // 2 + 7 * k, args.size // 3 + 5 * k) for k in range(args.naive_pixels)]
        naive = naive_backward_seconds(model, a, b, pixels) * n
        ideal = n / passes
        ratio = naive / seconds
        print(f"{name:16s} {field.size:4d} {passes:7d} {seconds:9.1f} {naive:19.0f} {ratio:7.0f} {ideal:7.0f} "
              f"{ratio / ideal:9.2f} {dense.method}", flush=True)


if __name__ == "__main__":
    main()
