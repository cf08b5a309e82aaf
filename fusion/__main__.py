"""Command line: python -m fusion {list,fuse,demo,train,saliency,report,users} ...

Run ``python -m fusion COMMAND --help`` for each command's options. User
models named in $FUSION_PLUGINS (or --plugins) are available to every command.
"""
from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

import numpy as np


def _save_png(image: np.ndarray, path: Path) -> None:
    """(H, W) grey or (H, W, 3) RGB in [0, 1] -> an 8-bit "L" or "RGB" PNG."""
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.round(np.clip(image, 0, 1) * 255).astype(np.uint8)).save(path)


def _fuse(model, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    import torch

    with torch.no_grad():
        return model(torch.from_numpy(a)[None, None], torch.from_numpy(b)[None, None])[0, 0].numpy()


def cmd_list(args) -> int:
    from . import list_models
    from .models.registry import default_checkpoint_path

    for name in list_models():
        path = default_checkpoint_path(name)
        print(f"{name:18s} {path if path is not None else '(no weights needed)'}")
    return 0


def cmd_fuse(args) -> int:
    from . import create_model, load_pair

    pair = load_pair(args.mri, args.pet)
    model = create_model(args.model, args.checkpoint)
    fused = _fuse(model, *pair)
    _save_png(pair.colour_fused(fused) if pair.is_colour else fused, Path(args.out))
    print(f"wrote {args.out}" + (" (RGB: the fused Y with the PET's colour)" if pair.is_colour else ""))
    return 0


#: The montage's rows by default: the three whole-head samples (colour PET/SPECT) and two brain-only ones.
DEMO_SAMPLES = ("head-axial-090", "head-axial-075", "head-axial-040", "coronal-100", "sagittal-070")


def demo_samples(names: list[str] | None) -> list[str]:
    """The bundled samples a montage shows: ``names`` (``["all"]``: every one), default ``DEMO_SAMPLES``."""
    from .data import list_samples
    from .errors import InvalidInput

    bundled = list_samples()
    if names == ["all"]:
        return bundled
    chosen = list(names or [s for s in DEMO_SAMPLES if s in bundled] or bundled)
    unknown = [n for n in chosen if n not in bundled]
    if unknown:
        raise InvalidInput(f"unknown sample pair {unknown[0][:40]!r}; bundled pairs: {', '.join(bundled)}")
    return chosen


def cmd_demo(args) -> int:
    """Fuse bundled sample pairs (``--samples``) with every model and write a montage PNG, a row per pair."""
    from . import create_model, list_models
    from .data import load_sample

    samples = demo_samples(args.samples)
    models = [(name, create_model(name)) for name in (args.models or list_models())]
    rows = []
    for sample in samples:
        pair = load_sample(sample)
        fused = [pair.colour_fused(_fuse(model, *pair)) for _, model in models]
        rows.append(np.concatenate([np.repeat(pair.mri[..., None], 3, axis=-1), pair.colour_pet(), *fused], axis=1))
        print(f"{sample}: fused with {', '.join(n for n, _ in models)}")
    _save_png(np.concatenate(rows, axis=0), Path(args.out))
    print(f"rows: {', '.join(samples)}\ncolumns: MRI, PET, {', '.join(n for n, _ in models)}\nwrote {args.out}")
    return 0


def cmd_train(args) -> int:
    from .train import TrainConfig, train

    card = train(TrainConfig(model=args.model, data=args.data, out=args.out, steps=args.steps,
                             crop=args.crop, batch=args.batch, lr=args.lr, seed=args.seed,
                             val_every=args.val_every, device=args.device, resume=args.resume, init=args.init,
                             time_limit_min=args.time_limit_min, stop_after=args.stop_after,
                             freeze_batchnorm=args.freeze_batchnorm,
                             command="python -m fusion " + shlex.join(args.argv)))
    q = card["held_out_quality"]
    print(f"wrote {Path(args.out) / card['checkpoint']} after {card['steps']} steps, {card['wall_time_s']} s")
    print(f"held-out loss {q['model']['loss']} (weighted average {q['weighted_average_baseline']['loss']})")
    return 0


def cmd_saliency(args) -> int:
    """Whole-image saliency (dense Jacobians) to HDF5: one model on one pair, or models on a folder of pairs."""
    from tqdm import tqdm

    from . import list_models, load_pair
    from .data import load_sample
    from .errors import InvalidInput
    from .fanout import run
    from .saliency import save_hdf5
    from .serving import SaliencyService

    models = list_models() if args.models == ["all"] else args.models or [args.model]
    unknown = [m for m in models if m not in list_models()]
    if unknown:
        raise InvalidInput(f"unknown model {unknown[0][:40]!r}; registered: {', '.join(list_models())}")
    if args.workers is not None and args.workers < 1:
        raise InvalidInput("--workers must be at least 1")
    if args.pairs and not args.out_dir:
        raise InvalidInput("--pairs DIR needs --out-dir OUT")
    if not args.pairs and (not args.out or len(models) != 1):
        raise InvalidInput("one pair (--pair or --sample) takes one --model and --out FILE")
    checkpoint = None if args.checkpoint.lower() == "none" else args.checkpoint
    service = SaliencyService(cache_dir=args.cache_dir, device=args.device, checkpoint=checkpoint)
    bar = tqdm(desc="whole-image maps", unit="px", unit_scale=True, total=1, disable=args.quiet)

    def progress(done, total):
        bar.total, bar.n = max(total, 1), done
        bar.refresh()

    with bar:
        if args.pairs:
            from .cohort import run_cohort

            rows = run_cohort(service, models, args.pairs, args.out_dir, args.workers, progress=progress)
        else:
            try:
                pair = load_sample(args.sample) if args.sample else load_pair(*args.pair)
            except KeyError as exc:
                raise InvalidInput(exc.args[0]) from None
            pair_id = service.put_pair(pair.mri, pair.pet, pair.pet_chroma, pair.pet_range)
            outcome = run(service, [(models[0], pair_id)], workers=args.workers,
                          progress=lambda _request, units: progress(sum(u["done"] for u in units.values()),
                                                                     sum(u["total"] for u in units.values())))
            failed = [u["error"] for u in outcome.values() if u["error"]]
            if failed:
                raise InvalidInput(f"{models[0]}: {failed[0]}")
            dense = service.cached_dense(models[0], pair_id) or service.dense(models[0], pair_id)
            save_hdf5(dense, args.out)
    if args.pairs:
        failed = [r for r in rows if r["error"]]
        print(f"wrote {len(rows) - len(failed)} results and statistics.csv to {args.out_dir}"
              + (f"; {len(failed)} failed (see statistics.csv)" if failed else ""))
        return 1 if failed else 0
    why = f" ({dense.reason})" if dense.reason else ""
    print(f"wrote {args.out}: {models[0]}, method {dense.method}{why}, receptive field {dense.receptive_field}")
    return 0


def cmd_users(args) -> int:
    """Add, replace, remove or list the users of a server's sign-in file (see fusion.users)."""
    try:
        return _users(args)
    except OSError as exc:
        print(f"error: {args.file}: {exc.strerror or exc}", file=sys.stderr)
        return 2


def _users(args) -> int:
    from . import users

    if args.action == "list":
        for name in users.read_users(args.file):
            print(name)
        return 0
    users.check_name(args.name)
    if args.action == "remove":
        if not users.remove_user(args.file, args.name):
            print(f"error: no user {args.name!r} in {args.file}", file=sys.stderr)
            return 1
        print(f"removed {args.name} from {args.file}")
        return 0
    if sys.stdin.isatty():
        import getpass

        password = getpass.getpass(f"password for {args.name}: ")
        if password != getpass.getpass("again: "):
            print("error: the two passwords differ", file=sys.stderr)
            return 1
    else:
        password = sys.stdin.readline().rstrip("\r\n")
    replaced = users.add_user(args.file, args.name, password)
    print(f"{'replaced the password of' if replaced else 'added'} {args.name} in {args.file}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m fusion", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--plugins", help="modules or .py files registering user models (adds to $FUSION_PLUGINS)")
    sub = parser.add_subparsers(dest="command", required=True)

    sub.add_parser("list", help="registered models and their checkpoints").set_defaults(func=cmd_list)

    p = sub.add_parser("fuse", help="fuse one image pair")
    p.add_argument("--model", required=True)
    p.add_argument("--checkpoint", default="default")
    p.add_argument("mri")
    p.add_argument("pet")
    p.add_argument("--out", required=True, help="fused image (PNG): RGB when the PET is colour (the fused Y "
                   "on the PET's luminance range, with the PET's Cb/Cr), grey otherwise")
    p.set_defaults(func=cmd_fuse)

    p = sub.add_parser("demo", help="fuse bundled sample pairs with every model into a montage")
    p.add_argument("--models", nargs="*")
    p.add_argument("--samples", nargs="+", help="bundled pairs, one row each, or 'all' "
                   f"(default: {' '.join(DEMO_SAMPLES)})")
    p.add_argument("--out", default="fused_samples.png")
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("train", help="train a network with the paper's SSIM + MSE loss")
    p.add_argument("--model", required=True)
    p.add_argument("--data", default="mni", help="'mni' (simulated on the fly), 'samples', or a directory")
    p.add_argument("--out", default="checkpoints")
    p.add_argument("--steps", type=int, default=2000)
    p.add_argument("--crop", type=int, default=128)
    p.add_argument("--batch", type=int)
    p.add_argument("--lr", type=float)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--val-every", type=int, default=250)
    p.add_argument("--device", default="auto")
    start = p.add_mutually_exclusive_group()
    start.add_argument("--resume", help="a NAME.train.pt file written by an earlier run")
    start.add_argument("--init", help="fine-tune: start from this checkpoint's weights (NAME.pt beside its model card) "
                                  "with a new optimiser and schedule; the card records where it came from")
    p.add_argument("--time-limit-min", type=float, help="stop (and save) after this many minutes")
    p.add_argument("--stop-after", type=int, help="stop (resumably) after this many steps of this run")
    p.add_argument("--freeze-batchnorm", action="store_true",
                   help="BatchNorm layers keep running statistics (re-estimated once when freezing) while "
                        "training: a fine-tuning leg that trains the network exactly as it is evaluated")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("saliency", help="whole-image Jacobians (HDF5) of one model on one pair, or of several "
                       "models on every pair of a folder (--pairs DIR --out-dir OUT)")
    chosen = p.add_mutually_exclusive_group(required=True)
    chosen.add_argument("--model", help="one registered model")
    chosen.add_argument("--models", nargs="+", help="several registered models ('all': every one)")
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--pair", nargs=2, metavar=("MRI", "PET"), help="two co-registered image files")
    source.add_argument("--sample", help="a bundled sample pair (see fusion.data.list_samples())")
    source.add_argument("--pairs", metavar="DIR", help="a folder of NAME_mri.EXT / NAME_pet.EXT pairs (a cohort)")
    p.add_argument("--checkpoint", default="default", help="'default', 'none' (fresh weights) or a path")
    p.add_argument("--out", help="HDF5 file to write (one model, one pair)")
    p.add_argument("--out-dir", help="folder for NAME__MODEL.h5 files and statistics.csv (finished ones are "
                   "skipped: a run resumes)")
    p.add_argument("--workers", type=int, help="processes computing at once (default: the usable cores; "
                   "1: one process)")
    p.add_argument("--cache-dir", help="saliency cache (default $FUSION_CACHE_DIR or ~/.cache/fusion-saliency)")
    p.add_argument("--device", default="auto", help="'auto' (the GPU if there is one, else the CPU), 'cpu', "
                   "'cuda' or 'cuda:N'")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_saliency)

    p = sub.add_parser("users", help="users of the dashboard's sign-in (FUSION_AUTH_FILE)")
    actions = p.add_subparsers(dest="action", required=True)
    for action, what in (("add", "add a user or replace their password (read from stdin, else prompted)"),
                         ("remove", "remove a user"), ("list", "list the users")):
        q = actions.add_parser(action, help=what)
        if action != "list":
            q.add_argument("name")
        q.add_argument("--file", required=True, help="the users file (user:bcrypt-hash lines)")
        q.set_defaults(func=cmd_users)

    from .report import add_report_parser

    add_report_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser().parse_args(argv)
    args.argv = argv
    from .errors import InvalidCheckpoint, InvalidInput, UnknownModel
    from .models.registry import load_plugins

    try:
        if args.plugins:
            load_plugins(args.plugins)
        return args.func(args)
    except (InvalidInput, InvalidCheckpoint, UnknownModel, ImportError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
