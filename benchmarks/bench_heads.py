"""Every bundled network against the weighted average on held-out simulated head pairs.

    nice python benchmarks/bench_heads.py [--pairs 24] [--heads 8] [--size 256] [--models funfusean ...]

Pairs: whole simulated heads (fusion.head_pairs) that training never sees: head ids 10.. (ids < 900
are held out), at template slices within 4 of a bundled sample's (the bands ``--data mni`` never
draws in any head), each imaged with ``random_settings`` (T1/T2/PD, FDG/amyloid PET or DaT/perfusion
SPECT through a hot/jet/rainbow/grey colour map, seen as Y, noise, bias, view). Per network:

- loss: its own training loss (fusion.train.RECIPES weights), mean over pairs, and the weighted
  average's loss under the same weights (the in-run baseline);
- dark-PET anatomy: mean fused / mean MRI over the pixels of all pairs where PET < 0.05 and MRI > 0.2
  (1 keeps the MRI there, 0 erases it);
- SSIM(F, MRI) + SSIM(F, PET), mean over pairs, with the loss's SSIM (pytorch-msssim, 11 x 11 Gaussian
  window, sigma 1.5; scikit-image is not a dependency of this project).

Runs single-threaded by default (--threads) so that it leaves the other core alone.
"""
from __future__ import annotations

import argparse
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import MAIN_MODELS, load_model  # noqa: E402

from fusion.data import sample_slice_indices  # noqa: E402
from fusion.head_pairs import random_settings, render_head_pair  # noqa: E402
from fusion.heads import is_training_head  # noqa: E402
from fusion.metrics import LossWeights, fusion_loss, ssim  # noqa: E402
from fusion.train import RECIPES  # noqa: E402

FIRST_HEAD = 10


def held_out_pairs(count: int, heads: int, size: int, seed: int):
    """``count`` HeadPairs from heads FIRST_HEAD.. (``heads`` of them) at held-out slices."""
    bands = [(axis, index) for axis, indices in sample_slice_indices().items() for index in indices]
    pairs = []
    for n in range(count):
        rng = np.random.default_rng([seed, 4242, n])  # one stream per pair: pair n is pair n whatever else changes
        head_id = FIRST_HEAD + n % heads
        assert not is_training_head(head_id)
        axis, centre = bands[rng.integers(len(bands))]
        index = centre + int(rng.integers(-4, 5))
        pairs.append(render_head_pair(head_id, axis, index, random_settings(rng), rng, size))
    return pairs


@torch.no_grad()
def measure(model, pairs, weights: LossWeights) -> dict:
    losses, ssims, fused_dark, mri_dark = [], [], 0.0, 0.0
    for pair in pairs:
        a, b = (torch.from_numpy(x)[None, None] for x in (pair.mri, pair.pet))
        fused = model(a, b)
        losses.append(fusion_loss(fused, a, b, weights).item())
        ssims.append((ssim(fused, a) + ssim(fused, b)).item())
        dark = (pair.pet < 0.05) & (pair.mri > 0.2)
        fused_dark += float(fused[0, 0].numpy()[dark].sum())
        mri_dark += float(pair.mri[dark].sum())
    return {"loss": float(np.mean(losses)), "ssim_sum": float(np.mean(ssims)),
            "dark_ratio": fused_dark / max(mri_dark, 1e-9)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pairs", type=int, default=24)
    parser.add_argument("--heads", type=int, default=8, help="distinct held-out heads (about 3 s each to build)")
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--models", nargs="*", default=MAIN_MODELS[1:])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    t0 = time.perf_counter()
    pairs = held_out_pairs(args.pairs, args.heads, args.size, args.seed)
    made = time.perf_counter() - t0
    describe = lambda key: ", ".join(f"{k} {v}" for k, v in sorted(Counter(key(p) for p in pairs).items()))  # noqa: E731
    print(f"{len(pairs)} held-out head pairs, {args.size} x {args.size}, heads {FIRST_HEAD}-"
          f"{FIRST_HEAD + min(args.heads, args.pairs) - 1}, made in {made:.0f} s")
    print(f"  views: {describe(lambda p: p.axis)}; MRI: {describe(lambda p: p.settings.contrast)}")
    print(f"  tracers: {describe(lambda p: p.settings.tracer)}; "
          f"colour maps: {describe(lambda p: p.settings.colour_map)}")
    dark = sum(int(((p.pet < 0.05) & (p.mri > 0.2)).sum()) for p in pairs)
    print(f"  dark-PET anatomy pixels (PET < 0.05, MRI > 0.2): {dark} in all")

    baseline = load_model("weighted-average")[0].eval()
    base = measure(baseline, pairs, LossWeights())
    print()
    print("| network | weights | loss | weighted average loss (same weights) | dark-PET anatomy "
          "fused/MRI | SSIM(F,MRI) + SSIM(F,PET) |")
    print("|---|---|---|---|---|---|")
    print(f"| weighted-average | - | - | - | {base['dark_ratio']:.2f} | {base['ssim_sum']:.3f} |")
    for name in args.models:
        model, kind = load_model(name)
        weights = RECIPES[name].weights
        ours, wa = measure(model.eval(), pairs, weights), measure(baseline, pairs, weights)
        print(f"| {name} | {kind} | {ours['loss']:.4f} | {wa['loss']:.4f} | {ours['dark_ratio']:.2f} | "
              f"{ours['ssim_sum']:.3f} |", flush=True)
    print(f"\n{time.perf_counter() - t0:.0f} s in all, {args.threads} thread(s)")


if __name__ == "__main__":
    main()
