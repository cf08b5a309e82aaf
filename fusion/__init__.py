"""Exact per-pixel saliency for image-fusion networks.

    >>> import fusion
    >>> a, b = fusion.load_pair("mri.png", "pet.png")  # a Pair: unpacks as (MRI, PET's Y)
    >>> model = fusion.create_model("funfusean")
    >>> ja, jb = fusion.saliency.pixel_jacobian(model, a, b, row=128, col=100)
"""
from . import saliency  # noqa: E402
from .errors import InvalidCheckpoint, InvalidInput, UnknownModel
from .io import Pair, load_image, load_pair
from .models import create_model, list_models, register_model

__all__ = ["InvalidCheckpoint", "InvalidInput", "Pair", "UnknownModel", "create_model", "list_models",
           "load_image", "load_pair", "register_model", "saliency"]
