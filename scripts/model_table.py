"""Print the README's table of bundled checkpoints from their model cards.

    python scripts/model_table.py
"""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from fusion import list_models  # noqa: E402
from fusion.checkpoints import read_card  # noqa: E402
from fusion.models.registry import default_checkpoint_path  # noqa: E402


def main() -> None:
    print("| model | RF | parameters | steps (last run) | wall time | held-out loss | weighted average "
          "| SSIM to MRI / PET |")
    print("|---|---|---|---|---|---|---|---|")
    for name in list_models():
        path = default_checkpoint_path(name)
        card = read_card(path) if path is not None and path.exists() else None
        if card is None:
            continue
        q = card["held_out_quality"]
        print(f"| {name} | {card['architecture']['receptive_field']} | {card['architecture']['parameters']:,} "
              f"| {card['steps']:,} | {card['wall_time_s'] / 60:.0f} min | {q['model']['loss']:.4f} "
              f"| {q['weighted_average_baseline']['loss']:.4f} "
              f"| {q['model']['ssim_mri']:.3f} / {q['model']['ssim_pet']:.3f} |")


if __name__ == "__main__":
    main()
