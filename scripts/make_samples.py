"""Regenerate the bundled sample pairs in fusion/sample_data from the MNI152 template.

    python scripts/make_samples.py            # needs requirements-dev.txt (nilearn)
    python scripts/make_samples.py --heads    # only the simulated whole-head pairs

Brain-only pairs (AXIS-NNN): an MRI (T1) slice and a simulated FDG-PET slice with
its own Poisson noise. Head pairs (head-AXIS-NNN): a slice of a held-out simulated
head (fusion.head_pairs) as grey MRI and colour PET/SPECT. All 256 x 256, 8-bit PNG.
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from fusion.data import SAMPLE_DIR, simulate_pair  # noqa: E402
from fusion.head_pairs import BUNDLED_SAMPLES, render_head_pair  # noqa: E402

#: (axis, slice index on the template's 1 mm grid): a spread of views.
SAMPLES = [("axial", 72), ("axial", 95), ("axial", 118), ("coronal", 100), ("coronal", 140),
           ("sagittal", 70), ("sagittal", 98)]

NOTICE = """Sample pairs derived from the MNI ICBM152 2009c nonlinear symmetric template
(T1 and grey/white-matter probability maps, as shipped in the nilearn package).
The PET images of the AXIS-NNN pairs are simulated (4 x grey + 1 x white matter
uptake, 7 mm FWHM blur, Poisson noise) by scripts/make_samples.py. The head-AXIS-NNN
pairs are slices of procedurally simulated heads built around the template's brain
(fusion/heads.py: scalp, skull, face, eyes; spin-echo T2, T1 or PD MRI; FDG PET or
perfusion/DaT SPECT through a colour map), made by scripts/make_samples.py --heads.

Copyright (C) 1993-2009 Louis Collins, McConnell Brain Imaging Centre,
Montreal Neurological Institute, McGill University. Permission to use, copy,
modify, and distribute this software and its documentation for any purpose and
without fee is hereby granted, provided that the above copyright notice appear
in all copies. The authors and McGill University make no representations about
the suitability of this software for any purpose. It is provided "as is"
without express or implied warranty. The authors are not responsible for any
data loss, equipment damage, property loss, or injury to subjects or patients
resulting from the use or misuse of this software package.
"""


def write_head_samples() -> None:
    for head_id, axis, index, settings in BUNDLED_SAMPLES:
        pair = render_head_pair(head_id, axis, index, settings, np.random.default_rng([20240612, head_id]))
        name = f"head-{axis}-{index:03d}"
        Image.fromarray(np.round(pair.mri * 255).astype(np.uint8)).save(SAMPLE_DIR / f"{name}_mri.png", optimize=True)
        Image.fromarray(np.round(pair.pet_rgb * 255).astype(np.uint8), mode="RGB").save(
            SAMPLE_DIR / f"{name}_pet.png", optimize=True)
        print(f"wrote {name} (head {head_id}, {settings.contrast}, {settings.tracer}, {settings.colour_map})")


def main() -> None:
    SAMPLE_DIR.mkdir(parents=True, exist_ok=True)
    (SAMPLE_DIR / "NOTICE.txt").write_text(NOTICE)
    write_head_samples()
    if "--heads" in sys.argv[1:]:
        return
    rng = np.random.default_rng(20201208)
    for axis, index in SAMPLES:
        mri, pet = simulate_pair(axis, index, rng)
        for kind, image in (("mri", mri), ("pet", pet)):
            path = SAMPLE_DIR / f"{axis}-{index:03d}_{kind}.png"
            Image.fromarray(np.round(image * 255).astype(np.uint8)).save(path, optimize=True)
        print(f"wrote {axis}-{index:03d}")


if __name__ == "__main__":
    main()
