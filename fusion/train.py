"""Training the fusion networks with the paper's SSIM + MSE loss.

    python -m fusion train --model funfusean --data mni --out checkpoints/

Data: ``mni`` (pairs simulated on the fly from the MNI152 template: 80 % whole
heads with colour PET/SPECT seen as Y, 20 % skull-stripped brain slices; held-out
heads and the bundled sample slices never drawn), ``samples`` (the bundled
pairs, for smoke tests), or a directory holding ``NAME_mri.EXT`` /
``NAME_pet.EXT`` files (``fusion.training_data``). Training draws random crops with
flips and right-angle rotations; each step's batch is seeded by (seed, step), so a
resumed run continues exactly where it stopped. This module: the recipes, the
configuration, evaluation, the learning-rate schedule, BatchNorm handling and the loop.
"""
from __future__ import annotations

import datetime
import json
import math
import platform
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from . import data as sample_data
from .checkpoints import apply_state_dict, load_state_dict, read_card, save_checkpoint, sha256_file
from .devices import pick_device
from .metrics import LossWeights, fusion_loss, ssim
from .models import create_model
from .settings import read
from .training_data import Batches, PairSource, make_source


@dataclass(frozen=True)
class Recipe:
    """The paper's per-network hyper-parameters."""
    weights: LossWeights
    lr: float
    batch: int


RECIPES = {
    "funfusean": Recipe(LossWeights(0.99, 0.47, 0.5), 2e-3, 2),
    "deepfuse": Recipe(LossWeights(0.99, 0.497, 0.5), 2e-4, 2),
    "masknet": Recipe(LossWeights(0.99, 0.5, 0.494), 2e-3, 2),
    "deeppedestrian": Recipe(LossWeights(0.99, 0.52, 0.5), 2e-3, 8),
}
DEFAULT_RECIPE = Recipe(LossWeights(), 1e-3, 4)


@dataclass
class TrainConfig:
    model: str
    data: str = "mni"
    out: str = "checkpoints"
    steps: int = 2000
    crop: int = 128
    batch: int | None = None     # None: the recipe's
    lr: float | None = None      # None: the recipe's
    seed: int = 0
    val_pairs: int = 6
    val_every: int = 250
    device: str = "auto"
    resume: str | None = None
    init: str | None = None      # a checkpoint (NAME.pt with its card) whose weights a new run starts from
    time_limit_min: float | None = None
    stop_after: int | None = None  # stop (resumably) after this many steps in this run
    recalibration_batches: int = 100  # BatchNorm statistics re-estimated at the end
    freeze_batchnorm: bool = False  # BatchNorm layers use (and keep) their running statistics while training
    command: str = ""  # the command line that ran this, for the model card
    # processes making batches ahead of time (0: none); the batches are the same either way
    data_workers: int = field(default_factory=lambda: read("data_workers"))


# ------------------------------------------------------------ evaluation
@torch.no_grad()
def evaluate(model: torch.nn.Module, pairs, weights: LossWeights, device="cpu") -> dict[str, float]:
    """Mean paper loss and SSIM of the fused image to each source over full-size pairs."""
    model.eval()
    totals = np.zeros(3)
    for a, b in pairs:
        ta, tb = (torch.from_numpy(x)[None, None].to(device) for x in (a, b))
        fused = model(ta, tb)
        totals += [fusion_loss(fused, ta, tb, weights).item(), ssim(fused, ta).item(), ssim(fused, tb).item()]
    loss, s_a, s_b = (float(x) for x in totals / len(pairs))
    return {"loss": round(loss, 5), "ssim_mri": round(s_a, 4), "ssim_pet": round(s_b, 4)}


def held_out_quality(model: torch.nn.Module, weights: LossWeights, device="cpu",
                     names: list[str] | None = None) -> dict:
    """The model against the weighted average on the bundled (held-out) sample pairs: all of them,
    or ``names`` (a card's ``held_out_quality.pairs``, to recompute exactly what it reports)."""
    names = sample_data.list_samples() if names is None else list(names)
    pairs = [tuple(sample_data.load_sample(name))[:2] for name in names]
    baseline = create_model("weighted-average").to(device)
    return {"pairs": names, "model": evaluate(model, pairs, weights, device),
            "weighted_average_baseline": evaluate(baseline, pairs, weights, device)}


# -------------------------------------------------------------- training
WARMUP_FRACTION = 0.02


def learning_rate_factor(fraction: float) -> float:
    """Linear warm-up over the first 2 % of the run, then cosine decay to zero."""
    if fraction < WARMUP_FRACTION:
        return (fraction + 1e-3) / WARMUP_FRACTION
    return 0.5 * (1.0 + math.cos(math.pi * (fraction - WARMUP_FRACTION) / (1.0 - WARMUP_FRACTION)))


def batchnorms(model: torch.nn.Module) -> list[torch.nn.Module]:
    return [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]


def training_mode(model: torch.nn.Module, freeze_batchnorm: bool) -> None:
    """model.train(), except that frozen BatchNorm layers stay in eval mode (running statistics)."""
    model.train()
    if freeze_batchnorm:
        for norm in batchnorms(model):
            norm.eval()


@torch.no_grad()
def recalibrate_batchnorm(model: torch.nn.Module, source: PairSource, cfg: TrainConfig, batch: int,
                          device, batches: Batches | None = None) -> int:
    """Re-estimate BatchNorm running statistics as plain averages over training batches.

    The running statistics that training leaves behind are an exponential average
    dominated by the last few small batches; a noisy variance in the last
    BatchNorm before the output skews every fused pixel in eval mode. Returns the
    number of batches used (0 for a model without BatchNorm).
    """
    norms = batchnorms(model)
    if not norms or cfg.recalibration_batches <= 0:
        return 0
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None  # cumulative average
    model.train()
    batches = batches or Batches(source, batch, cfg.crop)
    for pair in batches.iterate([cfg.seed, 10_000_000 + i] for i in range(cfg.recalibration_batches)):
        a, b = (x.to(device) for x in pair)
        model(a, b)
    for norm in norms:
        norm.momentum = 0.1
    model.eval()
    return cfg.recalibration_batches


def train(cfg: TrainConfig, progress: bool = True) -> dict:
    """Train ``cfg.model`` and write ``OUT/NAME.pt`` with its model card. Returns the card."""
    if cfg.init and cfg.resume:
        raise ValueError("init starts a new run from a checkpoint's weights and resume continues a run: give one")
    recipe = RECIPES.get(cfg.model, DEFAULT_RECIPE)
    batch, lr = cfg.batch or recipe.batch, cfg.lr or recipe.lr
    device = pick_device(cfg.device)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    state_path = out / f"{cfg.model}.train.pt"

    torch.manual_seed(cfg.seed)
    model = create_model(cfg.model, checkpoint=None).to(device).train()
    if not any(p.requires_grad for p in model.parameters()):
        raise ValueError(f"model {cfg.model!r} has no trainable parameters")
    optimiser = torch.optim.Adam(model.parameters(), lr=lr)
    source = make_source(cfg.data, cfg.seed, cfg.val_pairs)
    batches = Batches(source, batch, cfg.crop, cfg.data_workers)
    baseline = evaluate(create_model("weighted-average"), source.validation, recipe.weights)["loss"]

    start, elapsed_before, history, commands, frozen_from = 0, 0.0, [], [cfg.command], -1
    initialised_from = None
    if cfg.init:
        apply_state_dict(model, load_state_dict(cfg.init), str(cfg.init))
        earlier = read_card(cfg.init) or {}
        initialised_from = {"checkpoint": str(cfg.init), "sha256": sha256_file(cfg.init),
                            **{key: earlier.get(key) for key in ("training_data", "steps", "wall_time_s", "command")}}
    if cfg.resume:
        state = torch.load(cfg.resume, map_location=device, weights_only=True)
        model.load_state_dict(state["model"])
        optimiser.load_state_dict(state["optimizer"])
        start, elapsed_before = int(state["step"]), float(state["elapsed_s"])
        history = [list(map(float, row)) for row in state["history"].tolist() if row[0] > 0]
        commands = [*state.get("commands", []), cfg.command]
        frozen_from = int(state.get("batchnorm_frozen_from", -1))
        initialised_from = json.loads(state.get("initialised_from", "null"))
    if cfg.freeze_batchnorm and frozen_from < 0 and batchnorms(model):
        # statistics from the cumulative average of many batches, not the last few, before freezing them
        recalibrate_batchnorm(model, source, cfg, batch, device, batches)
        frozen_from = start
    training_mode(model, cfg.freeze_batchnorm)

    def save_state(step: int, elapsed: float):
        torch.save({"model": model.state_dict(), "optimizer": optimiser.state_dict(), "step": step,
                    "elapsed_s": elapsed, "history": torch.tensor(history or [[0.0, 0.0, 0.0]]),
                    "commands": commands, "batchnorm_frozen_from": frozen_from,
                    "initialised_from": json.dumps(initialised_from)}, state_path)

    def progress_fraction(step: int, elapsed: float) -> float:
        by_time = elapsed / (60 * cfg.time_limit_min) if cfg.time_limit_min else 0.0
        return min(1.0, max(step / cfg.steps, by_time))

    t0 = time.perf_counter()
    step, running = start, None
    bar = tqdm(range(start, cfg.steps), initial=start, total=cfg.steps, disable=not progress,
               desc=f"train {cfg.model}", dynamic_ncols=True)
    stream = batches.iterate([cfg.seed, s] for s in range(start, cfg.steps))
    for step in bar:
        fraction = progress_fraction(step, elapsed_before + time.perf_counter() - t0)
        if fraction >= 1.0 or (cfg.stop_after is not None and step - start >= cfg.stop_after):
            break
        for group in optimiser.param_groups:
            group["lr"] = lr * learning_rate_factor(fraction)
        a, b = (x.to(device) for x in next(stream))
        loss = fusion_loss(model(a, b), a, b, recipe.weights).mean()
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
        running = loss.item() if running is None else 0.98 * running + 0.02 * loss.item()
        bar.set_postfix(loss=f"{running:.4f}")
        if (step + 1) % cfg.val_every == 0:
            val = evaluate(model, source.validation, recipe.weights, device)["loss"]
            training_mode(model, cfg.freeze_batchnorm)
            history.append([step + 1, running, val])
            bar.write(f"step {step + 1}: train loss {running:.4f}, validation loss {val:.4f} "
                      f"(weighted average {baseline:.4f})")
            save_state(step + 1, elapsed_before + time.perf_counter() - t0)
    else:
        step = cfg.steps
    bar.close()
    wall = elapsed_before + time.perf_counter() - t0
    save_state(step, wall)

    recalibrated = 0
    if not cfg.freeze_batchnorm:  # frozen statistics are the ones the last leg trained against: keep them
        recalibrated = recalibrate_batchnorm(model, source, cfg, batch, device, batches)  # after save_state
    batches.close()
    val = evaluate(model, source.validation, recipe.weights, device)
    card = {
        "model": cfg.model,
        "architecture": {"class": type(model).__name__, "doc": (type(model).__doc__ or "").strip(),
                         "parameters": sum(p.numel() for p in model.parameters()),
                         "receptive_field": getattr(model, "receptive_field", None)},
        "training_data": source.description,
        "loss": {"formula": "lam*[gs*(1-SSIM(F,A)) + (1-gs)*(1-SSIM(F,B))] + (1-lam)*[g2*MSE(F,A) + (1-g2)*MSE(F,B)]",
                 "ssim": "11x11 Gaussian window, sigma 1.5, data range 1 (pytorch-msssim)",
                 **asdict(recipe.weights)},
        "hyper_parameters": {"optimiser": "Adam", "lr": lr, "batch": batch, "crop": cfg.crop,
                             "schedule": "2% linear warm-up, then cosine decay to 0 over the run's budget "
                                         "(--steps, or --time-limit-min when that comes first)",
                             "augmentation": "random crops (mostly on anatomy), flips, 90-degree rotations",
                             "batchnorm_recalibration_batches": recalibrated,
                             **({"batchnorm_frozen_from_step": frozen_from} if frozen_from >= 0 else {})},
        "steps": step, "seed": cfg.seed, "device": str(device),
        "wall_time_s": round(wall, 1),
        "final_train_loss": None if running is None else round(running, 5),
        "final_validation": {**val, "weighted_average_loss": baseline},
        "history": [{"step": int(s), "train_loss": round(t, 5), "validation_loss": round(v, 5)}
                    for s, t, v in history],
        "held_out_quality": held_out_quality(model, recipe.weights, device),
        "command": " && ".join(commands),  # a resumed run lists every leg
        **({"initialised_from": initialised_from} if initialised_from else {}),  # the run before this one
        "software": {"torch": torch.__version__, "python": platform.python_version()},
        "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
    }
    return save_checkpoint(model.cpu(), out / f"{cfg.model}.pt", card)
