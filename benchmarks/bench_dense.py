"""Whole-image Jacobian per model: coloured backward passes against one backward pass per pixel.

    python benchmarks/bench_dense.py [--size 256] [--models funfusean deepfuse] [--quick] [--device cuda]

Ours is measured fully (dense_jacobian: on the CPU by default every pixel's shrinking window
replayed against one kept forward pass, "crops"; or --method coloured: one shared forward, rows x
cols coloured backward passes); the naive method (one full-image backward pass per pixel, the forward kept) is
extrapolated from a timed sample of pixels to all H x W pixels. The ideal ratio is
H x W / (rows x cols) passes. On a 2-core CPU the heavy models take minutes each at
256 x 256; --quick runs 64 x 64. --device cuda times both on a GPU (float32; TF32 stays off
unless --tf32 is given, which is then printed); --memory-mb sets the chunk budget
(FUSION_DENSE_MEMORY_MB).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import MAIN_MODELS, load_model, naive_backward_seconds, sample_pair, timed  # noqa: E402

from fusion.saliency import Method, analyse, dense_jacobian, plan  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--models", nargs="*", default=MAIN_MODELS[1:])
    parser.add_argument("--naive-pixels", type=int, default=4)
    parser.add_argument("--quick", action="store_true", help="64 x 64, 2 naive pixels")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--method", default="auto", choices=["auto", Method.CROPS.value, Method.COLOURED.value],
                        help="dense_jacobian's path (auto: crops on the CPU where verified, else coloured)")
    parser.add_argument("--memory-mb", type=int, default=None, help="chunk budget (default: FUSION_DENSE_MEMORY_MB)")
    parser.add_argument("--tf32", action="store_true", help="allow TF32 matrix and convolution kernels (GPU)")
    args = parser.parse_args()
    if args.quick:
        args.size, args.naive_pixels = 64, 2
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = args.tf32
    a, b = sample_pair(args.size)
    n = args.size * args.size
    budget = None if args.memory_mb is None else args.memory_mb << 20
    where = torch.cuda.get_device_name(args.device) if args.device.startswith("cuda") else \
        f"{torch.get_num_threads()} threads"
    print(f"dense benchmark, {args.size} x {args.size}, torch {torch.__version__}, {args.device} ({where}), "
          f"{'TF32 allowed' if args.tf32 else 'float32'}")
    print(f"{'model':16s} {'RF':>4s} {'passes':>7s} {'ours (s)':>9s} {'naive (s, extrap.)':>19s} "
          f"{'ratio':>7s} {'ideal':>7s} {'of ideal':>9s} method")
    for name in args.models:
        model, _ = load_model(name)
        model.to(args.device)
        for p in model.parameters():
            p.requires_grad_(False)
        plan(model, args.size, args.size)  # probe + verify once, as the service does (not timed)
        field = analyse(model).clipped(args.size, args.size)
        passes = min(field.rows, args.size) * min(field.cols, args.size)
        if args.device != "cpu":  # CUDA context, cuDNN's choice of kernels per shape: not timed
            dense_jacobian(model, a, b, keep_band=False, memory_budget=budget)
        seconds, dense = timed(dense_jacobian, model, a, b, memory_budget=budget, method=args.method,
                               device=args.device)
        pixels = [(args.size // 2 + 7 * k, args.size // 3 + 5 * k) for k in range(args.naive_pixels)]
        naive = naive_backward_seconds(model, a, b, pixels) * n
        ideal = n / passes
        ratio = naive / seconds
        print(f"{name:16s} {field.size:4d} {passes:7d} {seconds:9.1f} {naive:19.0f} {ratio:7.0f} {ideal:7.0f} "
              f"{ratio / ideal:9.2f} {dense.method}", flush=True)


if __name__ == "__main__":
    main()
