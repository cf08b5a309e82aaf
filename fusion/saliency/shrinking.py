"""The shrinking windows and their replay of kept activations, under their former module name.

They live in ``windows.py`` (``ShrinkingWindows``, ``Extent``, ``Unsupported``, recorded
``WindowProgram``s) and ``replay.py`` (``ForwardRecord``, ``record_forward``, ``ReplayWindows``);
``programs.py`` keeps the recorded programs per model. This module re-exports their public names for
the code that imports them from here; new code imports from the module that defines a name.
"""
from __future__ import annotations

from .replay import ForwardRecord, ReplaySource, ReplayWindows, record_forward
from .windows import (
    POINTWISE,
    SHAPE_QUERIES,
    Extent,
    NotRecordable,
    ShrinkingWindows,
    Unsupported,
    WindowProgram,
)

__all__ = ["POINTWISE", "SHAPE_QUERIES", "Extent", "ForwardRecord", "NotRecordable", "ReplaySource", "ReplayWindows",
           "ShrinkingWindows", "Unsupported", "WindowProgram", "record_forward"]
