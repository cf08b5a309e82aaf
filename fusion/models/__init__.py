"""Fusion networks, one module each, and the registry they register in.

Output range: FunFuseAn, MaskNet and DeepFuse end in (tanh + 1) / 2 (see
``layers.UnitTanh``), so their output lies in [0, 1] like their targets; the
paper's plain tanh gives (-1, 1). DeepPedestrian has no output activation, as in
the paper. Displays clip to [0, 1]; saliency is always computed on the raw output.
"""
from .registry import create_model, get_spec, list_models, load_plugins, register_model, unregister_model

# Importing the modules registers the built-in models, in this order.
# isort: off
from . import weighted_average, funfusean, masknet, deepfuse, deeppedestrian  # noqa: E402,F401
# isort: on

__all__ = ["create_model", "get_spec", "list_models", "load_plugins", "register_model", "unregister_model"]
