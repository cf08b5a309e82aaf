"""Where training pairs and batches come from (``fusion.train``'s data).

``--data`` names a source (``make_source``): ``mni`` (``SimulatedMNI``: pairs simulated on the fly
from the MNI152 template, mostly whole heads with colour PET/SPECT seen as Y; held-out heads and the
bundled sample slices never drawn), ``samples`` (the bundled pairs) or a directory of ``NAME_mri.EXT``
/ ``NAME_pet.EXT`` files (``FixedPairs``). Each source keeps a fixed validation set. ``Batches``
turns a source into the batches of a run: random crops with flips and right-angle rotations
(``random_crop_batch``), each fixed by its rng key, made here or ahead of time in worker processes.
"""
from __future__ import annotations

import itertools
import multiprocessing
from collections import deque
from pathlib import Path

import numpy as np
import torch

from . import data as sample_data
from . import head_pairs, heads
from .errors import InvalidInput
from .io import load_pair

#: Share of ``--data mni`` pairs that are whole simulated heads (the rest: skull-stripped brain slices).
HEAD_FRACTION = 0.8


class PairSource:
    """Training pairs drawn at random, and a fixed validation set."""

    description: str

    def draw(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        raise NotImplementedError

    validation: list[tuple[np.ndarray, np.ndarray]]


class SimulatedMNI(PairSource):
    """Pairs simulated on the fly: mostly whole heads (``fusion.head_pairs``), some brain-only.

    A head pair comes from one of ``heads.training_heads()`` (never a held-out or validation head),
    at a slice not within 4 of a bundled sample's; a brain-only pair is the older skull-stripped
    MRI + FDG simulation (``fusion.data.simulate_pair``) on ``data.training_slices()``. Each draw
    depends only on the rng it is given, so a step's batch is fixed by (seed, step).
    """

    def __init__(self, seed: int, val_pairs: int, head_fraction: float = HEAD_FRACTION):
        slices = sample_data.training_slices()
        order = np.random.default_rng(seed).permutation(len(slices))
        n_head_val = int(round(val_pairs * head_fraction))
        val_idx, train_idx = order[:val_pairs - n_head_val], order[val_pairs:]
        self.train_slices = [slices[i] for i in train_idx]
        self.head_fraction = head_fraction
        self.heads = heads.training_heads()
        self.excluded = sample_data.sample_slice_indices()
        val_rng = np.random.default_rng([seed, 999_999])
        self.validation = [sample_data.simulate_pair(*slices[i], val_rng) for i in val_idx]
        for _ in range(n_head_val):
            pair = head_pairs.draw_head_pair(val_rng, list(heads.VALIDATION_HEADS), self.excluded)
            self.validation.append((pair.mri, pair.pet))
        self.description = (
            f"{head_fraction:.0%} whole-head pairs simulated on the fly around the MNI ICBM152 2009 brain "
            f"(nilearn wheel; fusion.head_pairs: scalp, fat, skull, marrow, eyes, sinuses, face, neck; T1/T2/PD "
            f"spin echo with bias field and Rician noise; FDG, amyloid PET and DaT, perfusion SPECT with Poisson "
            f"noise through hot/jet/rainbow/grey colour maps, the network sees Y) from "
            f"{len(self.heads)} training heads (ids {self.heads[0]}-{self.heads[-1]}; held-out ids < 900 never "
            f"drawn); {1 - head_fraction:.0%} skull-stripped MRI/FDG pairs from {len(self.train_slices)} template "
            f"slices; slices within 4 of a bundled sample held out; {val_pairs} validation pairs "
            f"({n_head_val} from validation heads {heads.VALIDATION_HEADS.start}-{heads.VALIDATION_HEADS.stop - 1})")

    def draw(self, rng):
        if rng.random() < self.head_fraction:
            pair = head_pairs.draw_head_pair(rng, self.heads, self.excluded)
            return pair.mri, pair.pet
        return sample_data.simulate_pair(*self.train_slices[rng.integers(len(self.train_slices))], rng)


class FixedPairs(PairSource):
    def __init__(self, pairs: list[tuple[np.ndarray, np.ndarray]], description: str, seed: int, val_pairs: int):
        if len(pairs) < 2:
            raise InvalidInput("training needs at least two image pairs (one is kept for validation)")
        order = np.random.default_rng(seed).permutation(len(pairs))
        n_val = min(val_pairs, max(1, len(pairs) // 5))
        self.validation = [pairs[i] for i in order[:n_val]]
        self.train = [pairs[i] for i in order[n_val:]]
        self.description = f"{description}: {len(self.train)} training pairs, {n_val} validation pairs"

    def draw(self, rng):
        return self.train[rng.integers(len(self.train))]


def pairs_in_directory(directory: Path) -> list[tuple[np.ndarray, np.ndarray]]:
    """Pairs stored as ``NAME_mri.EXT`` beside ``NAME_pet.EXT``."""
    pairs = []
    for mri in sorted(directory.glob("*_mri.*")):
        pet = next(iter(sorted(directory.glob(mri.name.replace("_mri.", "_pet.").rsplit(".", 1)[0] + ".*"))), None)
        if pet is not None:
            pairs.append(load_pair(mri, pet))
    if not pairs:
        raise InvalidInput(f"no NAME_mri.EXT / NAME_pet.EXT pairs found in {directory}")
    return pairs


def make_source(spec: str, seed: int, val_pairs: int) -> PairSource:
    if spec == "mni":
        return SimulatedMNI(seed, val_pairs)
    if spec == "samples":
        return FixedPairs([(a, b) for _, a, b in sample_data.load_samples()], "bundled sample pairs", seed, val_pairs)
    directory = Path(spec)
    if not directory.is_dir():
        raise InvalidInput(f"--data must be 'mni', 'samples' or a directory; {spec!r} is none of them")
    return FixedPairs(pairs_in_directory(directory), f"pairs from {directory}", seed, val_pairs)


def random_crop_batch(source: PairSource, batch: int, crop: int, rng: np.random.Generator):
    """(batch, 1, crop, crop) tensors a, b: random crops, flips and rotations, mostly on the brain."""
    a_list, b_list = [], []
    for _ in range(batch):
        a, b = source.draw(rng)
        h, w = a.shape
        c = min(crop, h, w)
        for _attempt in range(10):  # prefer crops that show anatomy, not background
            top, left = rng.integers(h - c + 1), rng.integers(w - c + 1)
            ca, cb = a[top:top + c, left:left + c], b[top:top + c, left:left + c]
            if ca.mean() > 0.05:
                break
        k, flip = int(rng.integers(4)), bool(rng.integers(2))
        ca, cb = (np.rot90(x, k) for x in (ca, cb))
        if flip:
            ca, cb = ca[:, ::-1], cb[:, ::-1]
        a_list.append(np.ascontiguousarray(ca))
        b_list.append(np.ascontiguousarray(cb))
    to_tensor = lambda xs: torch.from_numpy(np.stack(xs)[:, None])  # noqa: E731
    return to_tensor(a_list), to_tensor(b_list)


_WORKER: dict = {}


def _start_batch_worker(source: PairSource, batch: int, crop: int) -> None:
    _WORKER.update(source=source, batch=batch, crop=crop)


def _batch_in_worker(key) -> tuple[np.ndarray, np.ndarray]:
    a, b = random_crop_batch(_WORKER["source"], _WORKER["batch"], _WORKER["crop"], np.random.default_rng(key))
    return a.numpy(), b.numpy()


class Batches:
    """The batches of a run, each fixed by its rng key (e.g. ``[seed, step]``), as ``random_crop_batch``
    makes them: here, one at a time (``workers=0``), or ahead of time in ``workers`` processes (at most
    4 per worker waiting). The same batches either way; simulated heads are then built in parallel too.
    ``FUSION_DATA_WORKERS`` sets ``TrainConfig.data_workers``."""

    def __init__(self, source: PairSource, batch: int, crop: int, workers: int = 0):
        self.source, self.batch, self.crop, self.workers = source, batch, crop, max(0, int(workers))
        self.pool = None
        if self.workers:
            context = multiprocessing.get_context("spawn")  # no fork of a process that may hold CUDA
            self.pool = context.Pool(self.workers, _start_batch_worker, (source, batch, crop))

    def iterate(self, keys):
        """(a, b) tensors, (batch, 1, crop, crop), for each key in order."""
        keys = iter(keys)
        if self.pool is None:
            for key in keys:
                yield random_crop_batch(self.source, self.batch, self.crop, np.random.default_rng(key))
            return
        waiting = deque(self.pool.apply_async(_batch_in_worker, (key,))
                        for key in itertools.islice(keys, 4 * self.workers))
        while waiting:
            a, b = waiting.popleft().get()
            for key in itertools.islice(keys, 1):
                waiting.append(self.pool.apply_async(_batch_in_worker, (key,)))
            yield torch.from_numpy(a), torch.from_numpy(b)

    def close(self) -> None:
        if self.pool is not None:
            self.pool.terminate()
            self.pool.join()
            self.pool = None
