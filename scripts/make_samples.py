"""Regenerate the bundled sample pairs in fusion/sample_data from the MNI152 template.

    python scripts/make_samples.py            # needs requirements-dev.txt (nilearn)

Each pair is an MRI (T1) slice and a simulated FDG-PET slice with its own
Poisson noise, 256 x 256, 8-bit PNG.
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from fusion.data import SAMPLE_DIR, simulate_pair  # noqa: E402

#: (axis, slice index on the template's 1 mm grid): a spread of views.
SAMPLES = [("axial", 72), ("axial", 95), ("axial", 118), ("coronal", 100), ("coronal", 140),
           ("sagittal", 70), ("sagittal", 98)]

NOTICE = """Sample pairs derived from the MNI ICBM152 2009c nonlinear symmetric template
(T1 and grey/white-matter probability maps, as shipped in the nilearn package).
The PET images are simulated (4 x grey + 1 x white matter uptake, 7 mm FWHM blur,
Poisson noise) by scripts/make_samples.py.

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


def main() -> None:
    SAMPLE_DIR.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(20201208)
    for axis, index in SAMPLES:
        mri, pet = simulate_pair(axis, index, rng)
        for kind, image in (("mri", mri), ("pet", pet)):
            path = SAMPLE_DIR / f"{axis}-{index:03d}_{kind}.png"
            Image.fromarray(np.round(image * 255).astype(np.uint8)).save(path, optimize=True)
        print(f"wrote {axis}-{index:03d}")
    (SAMPLE_DIR / "NOTICE.txt").write_text(NOTICE)


if __name__ == "__main__":
    main()
