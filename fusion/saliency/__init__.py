"""Exact Jacobians of fused pixels with respect to both input images.

    >>> import fusion
    >>> from fusion.saliency import dense_jacobian, pixel_jacobian, pixel_jacobians, record_forward
    >>> model = fusion.create_model("funfusean")
    >>> a, b = (x[112:144, 96:128] for x in fusion.data.load_sample("axial-095"))  # 32 x 32
    >>> ja, jb = pixel_jacobian(model, a, b, row=16, col=10)         # two H x W arrays
    >>> record = record_forward(model, a, b)                         # kept activations: hovers run
    >>> rows = pixel_jacobians(model, a, b, [(16, 10)], record=record)  # only the backward half
    >>> bool(abs(rows[0].ja - ja).max() <= 1e-6 * abs(ja).max())
    True
    >>> dense = dense_jacobian(model, a, b)                         # guidance, influence, rows
    >>> dense.method, dense.receptive_field                         # Method.COLOURED on a GPU
    (<Method.CROPS: 'crops'>, 23)
    >>> bool(abs(dense.row(16, 10)[0] - ja).max() <= 1e-5 * abs(ja).max())
    True

Every fast path rests on a checked assumption (locality, stride alignment, the
probed receptive field); where the check fails the exact full-image path is
used and the result's ``method`` (a ``Method``: the path's one name, for hovers
and whole images alike) and ``reason`` say so.
"""
from .dense import MAP_NAMES, Cancelled, colour_order, dense_jacobian, share
from .field import Field, analyse, receptive_field
from .hdf5 import load_hdf5, save_hdf5
from .methods import Method
from .pixel import PixelJacobian, crop_windows, pixel_jacobian, pixel_jacobians
from .planning import plan, replay_pays
from .replay import ForwardRecord, record_forward
from .result import DenseJacobian
from .verification import verify, verify_replay, verify_shrinking

__all__ = ["MAP_NAMES", "Cancelled", "DenseJacobian", "Field", "ForwardRecord", "Method", "PixelJacobian", "analyse",
           "colour_order", "crop_windows", "dense_jacobian", "load_hdf5", "pixel_jacobian", "pixel_jacobians",
           "plan", "receptive_field", "record_forward", "replay_pays", "save_hdf5", "share", "verify", "verify_replay",
           "verify_shrinking"]
