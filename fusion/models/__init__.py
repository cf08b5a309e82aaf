"""Fusion networks, one module each, and the registry they register in.

Output range: FunFuseAn, MaskNet and DeepFuse end in tanh, as in the paper, so
their output lies in (-1, 1); trained against [0, 1] targets they learn to stay
in [0, 1] (a black background is tanh(0), which a (tanh + 1) / 2 head could only
approach asymptotically, and SSIM punishes such offsets hard). DeepPedestrian
has no output activation. Displays clip to [0, 1]; saliency is always computed
on the raw output.
"""
# Importing the modules registers the built-in models, in this order.
from . import deepfuse, deeppedestrian, funfusean, masknet, weighted_average  # noqa: E402,F401
from .registry import create_model, get_spec, list_models, load_plugins, register_model

__all__ = ["create_model", "get_spec", "list_models", "load_plugins", "register_model"]
