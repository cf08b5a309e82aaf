"""The names of the saliency paths (``Method``): one name per path, for hovers and whole images alike.

A result's ``method`` (``PixelJacobian``, ``DenseJacobian``, a block of rows, an HDF5 file's
``method`` attribute, a disk-cache entry, the dashboard's readout) is one of these members. They
are ``str`` values, so they compare equal to, print as and serialise to their names:

    >>> from fusion.saliency import Method
    >>> Method.CROPS == "crops", f"{Method.FULL_IMAGE}", Method("crop")   # "crop": a former name
    (True, 'full-image', <Method.CROPS: 'crops'>)
"""
from __future__ import annotations

from enum import StrEnum

__all__ = ["FORMER_NAMES", "Method"]

#: Names used before version 2 of ``fusion.serving.keys.METHOD_VERSION`` (hovers on crops were "crop"),
#: still accepted wherever a method is read (``Method("crop")`` is ``Method.CROPS``).
FORMER_NAMES = {"crop": "crops"}


class Method(StrEnum):
    """How a Jacobian row or map was computed (every path is exact; see docs/architecture.md).

    ``CROPS``: on the pixel's receptive field only (a crop of the inputs, shrinking windows, their
    replay against kept activations); a hover's fast path and, on the CPU, a whole image's.
    ``COLOURED``: coloured backward passes, many output pixels per pass (whole images only).
    ``FULL_IMAGE``: plain autograd on the whole image, for any model (non-local models, failed checks).
    ``DENSE_CACHE``: a hover read from the banded Jacobian of a whole-image result already computed.
    """

    CROPS = "crops"
    COLOURED = "coloured"
    FULL_IMAGE = "full-image"
    DENSE_CACHE = "dense-cache"

    @classmethod
    def _missing_(cls, value):
        name = FORMER_NAMES.get(value) if isinstance(value, str) else None
        return None if name is None else cls(name)
