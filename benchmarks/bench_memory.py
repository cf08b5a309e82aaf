"""Peak memory of a whole-image Jacobian at 512 x 512 (or --size), per model, in a fresh process each.

    python benchmarks/bench_memory.py [--size 512] [--budget-mb 1024] [--chunks 3]

Each model runs ``dense_jacobian`` in its own child process until a few chunks of batched
backward passes are done, then cancels: every later chunk has the same size, so the peak is
reached by then. Printed: the process's peak resident memory above its state before the
forward pass (the kept forward graph plus one chunk of backward passes plus the maps), and
the size of the banded Jacobian that ``keep_band=True`` adds on top (H x W x RF² x 2 float32:
the service keeps it so that hovers are served from it; ``keep_band=False`` avoids it).
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))


def peak_rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB


def child(name: str, size: int, budget: int, chunks: int) -> None:
    import torch
    from _common import load_model, sample_pair

    from fusion.saliency import Cancelled, analyse, dense_jacobian, plan

    torch.set_num_threads(1)
    model, _ = load_model(name)
    for p in model.parameters():
        p.requires_grad_(False)
    a, b = sample_pair(size)
    plan(model, 64, 64)  # probe the field on a small image (not what is measured)
    field = analyse(model).clipped(size, size)
    before = peak_rss_bytes()
    done = []

    def progress(k, total):
        done.append(k)

    try:
        dense_jacobian(model, a, b, progress=progress, cancel=lambda: len(done) >= chunks, keep_band=False,
                       memory_budget=budget)
    except Cancelled:
        pass
    band = 2 * size * size * field.rows * field.cols * 4 if field.local else 0
    print(json.dumps({"model": name, "peak_above_start": peak_rss_bytes() - before, "band": band,
                      "passes_done": done[-1] if done else 0}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--budget-mb", type=int, default=1024,
                        help="dense_jacobian's memory_budget (the app's setting: $FUSION_DENSE_MEMORY_MB)")
    parser.add_argument("--chunks", type=int, default=3)
    parser.add_argument("--models", nargs="*", default=["funfusean", "masknet", "deepfuse", "deeppedestrian"])
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.size, args.budget_mb << 20, args.chunks)
        return
    print(f"dense Jacobian memory, {args.size} x {args.size}, memory_budget {args.budget_mb} MiB, "
          f"{args.chunks} chunks then cancel, one fresh process per model")
    print(f"{'model':16s} {'peak above start':>17s} {'+ band if kept':>15s}")
    for name in args.models:
        run = subprocess.run([sys.executable, __file__, "--child", name, "--size", str(args.size),
                              "--budget-mb", str(args.budget_mb), "--chunks", str(args.chunks)],
                             capture_output=True, text=True, check=True)
        row = json.loads(run.stdout.strip().splitlines()[-1])
        print(f"{name:16s} {row['peak_above_start'] / 2**30:14.2f} GiB {row['band'] / 2**30:11.2f} GiB",
              flush=True)


if __name__ == "__main__":
    main()
