"""Serving saliency to many requests and processes: the cached ``SaliencyService`` and its parts.

    keys             cache keys, content hashes (``pair_hash``, ``weights_hash``), the checked blob format
    memory           ``LRU``: small in-memory caches
    store            ``DiskStore``: pairs, fields, plans (``StoredPlan``), fused images, dense results
    planner          ``Planner``: the models of a process and their plans (inline or in the background)
    hover            ``HoverEngine``: hovers by the planned path, kept activations, window programs
    pool             ``WorkerProcesses``: worker processes that watch their owner, killed at exit
    hover_processes  ``HoverProcesses``: hovers of several models at once in worker processes
    whole            ``WholeImages``: whole-image results, in one piece or in blocks of rows
    hover_requests   ``HoverRequests``: one pixel for several models: recent answers, order, processes or threads
    service          ``SaliencyService``: the facade composing them

Imports go one way, down this list (``service`` at the top).
"""
from .hover import HoverEngine
from .hover_processes import HoverProcesses
from .hover_requests import HoverRequests
from .keys import METHOD_VERSION, cache_key, pack, pair_hash, unpack, weights_hash
from .memory import LRU
from .planner import PLANNING, HoverPlan, Planner
from .pool import WorkerProcesses
from .service import SaliencyService
from .store import DiskStore, StoredPlan
from .whole import WholeImages

__all__ = ["LRU", "METHOD_VERSION", "PLANNING", "DiskStore", "HoverEngine", "HoverPlan", "HoverProcesses",
           "HoverRequests", "Planner", "SaliencyService", "StoredPlan", "WholeImages", "WorkerProcesses", "cache_key",
           "pack", "pair_hash", "unpack", "weights_hash"]
