"""Exceptions that carry a message meant for the user."""


class InvalidInput(ValueError):
    """An image or image pair that cannot be fused (bad file, size, values)."""


class InvalidCheckpoint(ValueError):
    """A checkpoint that is missing, tampered with, not a state dict, or does not fit."""


class UnknownModel(ValueError):
    """A model name that is not registered."""
