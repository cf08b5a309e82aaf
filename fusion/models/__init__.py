"""Fusion networks, one module each, and the registry they register in."""
from .registry import create_model, get_spec, list_models, load_plugins, register_model

# Importing the modules registers the built-in models, in this order.
from . import weighted_average, funfusean, masknet, deepfuse, deeppedestrian  # noqa: E402,F401

__all__ = ["create_model", "get_spec", "list_models", "load_plugins", "register_model"]
