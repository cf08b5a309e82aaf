"""The receptive field, verification and planning of a fusion model, under their former module name.

The engine keeps these in layered modules (imports go one way, top to bottom):

    state         per-model memo (``model_state``), ``fingerprint``, dtype and device, ``pinned``
    reference     ``run``, ``full_rows`` (full-image autograd), ``corner_pixels``
    field         ``Field``, probing (``analyse``), ``representative_shape``
    shrinking     shrinking windows; replay: kept activations; programs: recorded window programs
    crops         the crop path (``crop_rows``, ``crop_batches``)
    verification  ``verify``, ``verify_shrinking``, ``verify_replay``, ``remember_verdict``
    planning      ``plan``, ``replay_pays``, ``record_windows``

This module re-exports their public names for the code that imports them from here; new code
imports from the module that defines a name.
"""
from __future__ import annotations

from .field import (
    MAX_PROBE,
    PROBE_GROWTH,
    PROBE_REPEATS,
    Field,
    analyse,
    analytic_guess,
    probe_support,
    receptive_field,
    remember_field,
    representative_shape,
)
from .planning import plan, replay_pays
from .reference import corner_pixels, full_rows, run
from .state import (
    ModelState,
    double_copy,
    fingerprint,
    model_device,
    model_dtype,
    model_state,
    pinned,
    pinning,
)
from .verification import (
    VERIFY_RTOL,
    VERIFY_RTOL_FLOAT32,
    remember_verdict,
    verify,
    verify_replay,
    verify_shrinking,
)

__all__ = ["MAX_PROBE", "PROBE_GROWTH", "PROBE_REPEATS", "VERIFY_RTOL", "VERIFY_RTOL_FLOAT32", "Field", "ModelState",
           "analyse", "analytic_guess", "corner_pixels", "double_copy", "fingerprint", "full_rows", "model_device",
           "model_dtype", "model_state", "pinned", "pinning", "plan", "probe_support", "receptive_field",
           "remember_field", "remember_verdict", "replay_pays", "representative_shape", "run", "verify",
           "verify_replay", "verify_shrinking"]
