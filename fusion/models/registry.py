"""The model registry: every fusion network is one registered factory.

A factory (class or function) returns an ``nn.Module`` whose ``forward(a, b)``
maps two ``(N, 1, H, W)`` tensors in [0, 1] to one ``(N, 1, H, W)`` tensor.

User models register with the same decorator, from any module that is
imported: name modules or ``.py`` files in the ``FUSION_PLUGINS`` environment
variable (separated by commas or ``os.pathsep``), which the app and the command
line both read, or import the module yourself before calling ``create_model``.
"""
from __future__ import annotations

import importlib
import importlib.util
import os
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from torch import nn

from .. import checkpoints
from ..errors import UnknownModel
from ..settings import VARIABLES, read

PLUGINS_ENV = VARIABLES["plugins"][0]


@dataclass(frozen=True)
class ModelSpec:
    name: str
    factory: Callable[..., nn.Module]
    default_checkpoint: str | None  # file stem in CHECKPOINT_DIR, or a path


_REGISTRY: dict[str, ModelSpec] = {}
_loaded_plugins: set[str] = set()


def register_model(name: str, *, default_checkpoint: str | os.PathLike | None = None):
    """Decorator registering a model class or factory under ``name``.

    Args:
        name: the public name (lower case, dashes), unique.
        default_checkpoint: what ``create_model(name)`` loads: a stem of a file in
            ``checkpoints/`` or a path to a ``.pt`` state dict; None = fresh weights.

    Example:
        >>> @register_model("my-net")
        ... class MyNet(nn.Module):
        ...     def forward(self, a, b): return (a + b) / 2
        >>> "my-net" in list_models()
        True
        >>> unregister_model("my-net")
    """
    def decorator(factory):
        existing = _REGISTRY.get(name)
        # The same class imported twice (a plugin file re-read) may re-register.
        if existing is not None and existing.factory.__qualname__ != factory.__qualname__:
            raise ValueError(f"model name {name!r} is already registered by {existing.factory!r}")
        _REGISTRY[name] = ModelSpec(name, factory, None if default_checkpoint is None
                                    else str(default_checkpoint))
        return factory
    return decorator


def unregister_model(name: str) -> None:
    """Forget the model ``name`` (a test's or an unloaded plugin's); a plugin file that registered it is
    read again by the next ``load_plugins``. Raises UnknownModel for a name that is not registered."""
    spec = get_spec(name)
    del _REGISTRY[name]
    module = getattr(spec.factory, "__module__", "")
    for entry in list(_loaded_plugins):
        if entry == module or Path(entry).stem == module.removeprefix("fusion_plugin_"):
            _loaded_plugins.discard(entry)


def load_plugins(spec: str | None = None) -> None:
    """Import the user modules named in ``spec`` (default: $FUSION_PLUGINS) once."""
    spec = read("plugins") if spec is None else spec
    for entry in (e.strip() for e in spec.replace(os.pathsep, ",").split(",")):
        if not entry or entry in _loaded_plugins:
            continue
        try:
            if entry.endswith(".py"):
                path = Path(entry).expanduser().resolve()
                module_spec = importlib.util.spec_from_file_location(f"fusion_plugin_{path.stem}", path)
                if module_spec is None or not path.is_file():
                    raise FileNotFoundError(f"no such file: {path}")
                module = importlib.util.module_from_spec(module_spec)
                module_spec.loader.exec_module(module)
            else:
                importlib.import_module(entry)
        except Exception as exc:
            raise ImportError(f"could not load fusion plugin {entry!r} (from ${PLUGINS_ENV}): {exc}") from exc
        _loaded_plugins.add(entry)


def list_models() -> list[str]:
    """Names of every registered model, built-in ones first."""
    load_plugins()
    return list(_REGISTRY)


def get_spec(name: str) -> ModelSpec:
    load_plugins()
    try:
        return _REGISTRY[name]
    except KeyError:
        raise UnknownModel(f"unknown model {name!r}; known models: {', '.join(_REGISTRY)}") from None


def default_checkpoint_path(name: str) -> Path | None:
    """Path of the bundled checkpoint of ``name`` (None if it has none)."""
    stem = get_spec(name).default_checkpoint
    if stem is None:
        return None
    path = Path(stem)
    return path if path.suffix == ".pt" else checkpoints.CHECKPOINT_DIR / f"{stem}.pt"


def create_model(name: str, checkpoint: str | os.PathLike | None = "default", **kwargs) -> nn.Module:
    """Build a registered model in eval mode on the CPU.

    Args:
        name: one of ``list_models()``.
        checkpoint: "default" (the bundled trained weights), None (fresh weights)
            or a path to a state-dict checkpoint.
        **kwargs: passed to the factory (e.g. ``w=0.3`` for "weighted-average").
    Raises:
        UnknownModel: ``name`` is not registered.
        InvalidCheckpoint: the checkpoint is missing, tampered or does not fit.
    """
    spec = get_spec(name)
    model = spec.factory(**kwargs)
    source = None
    if checkpoint == "default":
        source = default_checkpoint_path(name)
        if source is None and any(True for _ in model.parameters()):
            warnings.warn(f"model {name!r} has no bundled checkpoint: using fresh (untrained) weights",
                          stacklevel=2)
    elif checkpoint is not None:
        source = Path(checkpoint)
    if source is not None:
        checkpoints.apply_state_dict(model, checkpoints.load_state_dict(source), str(source))
    model.eval()
    model.fusion_name = name
    model.checkpoint_path = None if source is None else str(source)
    return model
