"""Exact per-pixel saliency for image-fusion networks.

    >>> import fusion
    >>> from fusion.data import sample_paths
    >>> a, b = fusion.load_pair(*sample_paths("axial-095"))  # a Pair: unpacks as (MRI, PET's Y)
    >>> model = fusion.create_model("funfusean")            # the bundled trained weights
    >>> ja, jb = fusion.saliency.pixel_jacobian(model, a, b, row=128, col=100)
    >>> ja.shape, jb.shape                                  # dF(128, 100)/dMRI and /dPET
    ((256, 256), (256, 256))
"""
from . import saliency  # noqa: E402
from .errors import InvalidCheckpoint, InvalidInput, UnknownModel
from .io import Pair, load_image, load_pair
from .models import create_model, list_models, register_model

__all__ = ["InvalidCheckpoint", "InvalidInput", "Pair", "UnknownModel", "create_model", "list_models",
           "load_image", "load_pair", "register_model", "saliency"]
