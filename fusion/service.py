"""The cached saliency facade, under its former module name: ``fusion.serving`` holds it.

``from fusion.service import SaliencyService`` keeps working; new code imports from ``fusion.serving``.
"""
from __future__ import annotations

from .saliency.pixel import PixelJacobian
from .serving.keys import METHOD_VERSION, pack, pair_hash, unpack, weights_hash
from .serving.memory import LRU
from .serving.planner import FIELD_WAIT_S, PLANNING
from .serving.service import HOVER_WORKERS, SaliencyService

#: One fused pixel's saliency for one model (``fusion.saliency.PixelJacobian``).
PixelSaliency = PixelJacobian

__all__ = ["FIELD_WAIT_S", "HOVER_WORKERS", "LRU", "METHOD_VERSION", "PLANNING", "PixelSaliency", "SaliencyService",
           "pack", "pair_hash", "unpack", "weights_hash"]
