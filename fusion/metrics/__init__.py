"""Image-quality measures: the paper's training loss, and the fusion quality metrics papers report.

``evaluate(fused, a, b)`` gives EN, SD, SF, AG, MI, SCD, VIF, Qabf, SSIM and PSNR of a fused
image against its two sources (H x W arrays in [0, 1], computed on the 0-255 scale); each metric
is also a function of its own, whose docstring gives the paper, the formula and the convention.
Every one is "higher is better" (``HIGHER_IS_BETTER``). Which library computes what:
SSIM: scikit-image (``structural_similarity``); all others: numpy (VIF and Qabf filter with scipy).
``docs/metrics.md`` states every convention with its references.

``saliency_summary(mri_share, mask)`` gives the two saliency numbers shown beside them.
"""
from __future__ import annotations

import numpy as np

from ..errors import InvalidInput
from .image import (
    as_image,
    as_images,
    average_gradient,
    entropy,
    mutual_information,
    mutual_information_pair,
    scd,
    spatial_frequency,
    standard_deviation,
)
from .loss import LossWeights, fusion_loss, mse, ssim
from .structure import VIF_MIN_SIDE, psnr, qabf, ssim_sum, vif, vif_pair

#: The metrics of ``evaluate``, in the order papers list them, and the function computing each.
METRICS = {
    "EN": lambda f, a, b: entropy(f),
    "SD": lambda f, a, b: standard_deviation(f),
    "SF": lambda f, a, b: spatial_frequency(f),
    "AG": lambda f, a, b: average_gradient(f),
    "MI": mutual_information,
    "SCD": scd,
    "VIF": vif,
    "Qabf": qabf,
    "SSIM": ssim_sum,
    "PSNR": psnr,
}
#: The direction of each metric: all ten are higher-is-better in the usual convention (PSNR too: less error).
HIGHER_IS_BETTER = {name: True for name in METRICS}
#: Units and scales, for tables.
UNITS = {"EN": "bits", "SD": "0-255", "SF": "0-255", "AG": "0-255", "MI": "nats", "SCD": "", "VIF": "",
         "Qabf": "", "SSIM": "", "PSNR": "dB"}
#: A pixel is "MRI-dominated" when its MRI share exceeds this.
DOMINANCE = 0.5


def evaluate(fused, a, b) -> dict[str, float]:
    """All ten metrics of a fused image against its sources: {"EN", "SD", ..., "PSNR": float}.

    ``fused``, ``a`` (MRI), ``b`` (PET): H x W arrays in [0, 1] of one shape, at least 41 x 41 (VIF's
    scales). Raises InvalidInput otherwise (other shapes, NaN, values outside [0, 1], not 2-D).
    A metric undefined on these images is NaN (SCD or VIF of a constant source, Qabf of two
    sources without edges); PSNR is ``inf`` when F = A = B.

    >>> import numpy as np
    >>> x = (np.arange(64 * 64) % 256).reshape(64, 64) / 255  # every grey level 16 times
    >>> m = evaluate(x, x, x)
    >>> round(m["SSIM"], 6), round(m["VIF"], 6), m["PSNR"], round(m["EN"], 3)
    (2.0, 2.0, inf, 8.0)
    """
    f, ia, ib = (x / 255.0 for x in as_images(fused, a, b, VIF_MIN_SIDE))
    return {name: float(metric(f, ia, ib)) for name, metric in METRICS.items()}


def saliency_summary(mri_share, mask=None) -> dict[str, float]:
    """{"mean_mri_share", "mri_dominated"} of an H x W MRI-share map over a boolean H x W ``mask``.

    MRI share = influence_MRI / (influence_MRI + influence_PET) per fused pixel
    (``DenseJacobian.mri_share``); "mri_dominated" is the fraction of the mask's pixels whose
    share exceeds ``DOMINANCE`` (0.5). NaN values (no influence at all) are left out; an
    empty mask gives NaN for both. The dashboard's brain mask is MRI > 0.1.
    """
    share = np.asarray(mri_share, dtype=np.float64)
    if share.ndim != 2:
        raise InvalidInput(f"MRI share: expected an H x W map, got shape {share.shape}")
    if mask is not None:
        mask = np.asarray(mask)
        if mask.shape != share.shape or mask.dtype != bool:
            raise InvalidInput(f"mask: expected a boolean {share.shape} array, got {mask.dtype} {mask.shape}")
        share = share[mask]
    share = share[np.isfinite(share)]
    if share.size == 0:
        return {"mean_mri_share": float("nan"), "mri_dominated": float("nan")}
    return {"mean_mri_share": float(share.mean()), "mri_dominated": float((share > DOMINANCE).mean())}


__all__ = [
    "LossWeights", "fusion_loss", "mse", "ssim",
    "METRICS", "HIGHER_IS_BETTER", "UNITS", "DOMINANCE", "evaluate", "saliency_summary",
    "as_image", "as_images", "entropy", "standard_deviation", "spatial_frequency", "average_gradient",
    "mutual_information", "mutual_information_pair", "scd", "vif", "vif_pair", "qabf", "ssim_sum", "psnr",
]
