"""Exact Jacobians of fused pixels with respect to both input images.

    >>> from fusion.saliency import pixel_jacobian, dense_jacobian
    >>> ja, jb = pixel_jacobian(model, a, b, row=128, col=100)     # two H x W arrays
    >>> dense = dense_jacobian(model, a, b)                         # guidance, influence, rows
    >>> dense.method, dense.receptive_field
    ('coloured', 23)

Every fast path rests on a checked assumption (locality, stride alignment, the
probed receptive field); where the check fails the exact full-image path is
used and the result's ``method`` and ``reason`` say so.
"""
from .dense import MAP_NAMES, Cancelled, DenseJacobian, colour_order, dense_jacobian, share
from .hdf5 import load_hdf5, save_hdf5
from .pixel import PixelJacobian, crop_windows, pixel_jacobian, pixel_jacobians
from .receptive_field import Field, analyse, plan, receptive_field, verify, verify_shrinking

__all__ = ["MAP_NAMES", "Cancelled", "DenseJacobian", "Field", "PixelJacobian", "analyse", "colour_order",
           "crop_windows", "dense_jacobian", "load_hdf5", "pixel_jacobian", "pixel_jacobians", "plan",
           "receptive_field", "save_hdf5", "share", "verify", "verify_shrinking"]
