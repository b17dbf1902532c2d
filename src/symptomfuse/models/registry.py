"""A registry of model parts by name, so that ``--audio-encoder logmel_cnn`` names a constructor and every
model can be rebuilt from a plain JSON config: ``{"name": "logmel_cnn", "n_mels": 64, ...}``."""

from __future__ import annotations

from typing import Callable

import torch.nn as nn
from symptomfuse.errors import UsageError

_REGISTRY: dict[str, dict[str, Callable[..., nn.Module]]] = {"encoder": {}, "fusion": {}}


def register(kind: str, name: str):
    """Class decorator: make ``name`` build this module. ``kind`` is "encoder" or "fusion"."""
    def wrap(cls):
        if name in _REGISTRY[kind]:
            raise UsageError(f"{kind} {name!r} is registered twice")
        _REGISTRY[kind][name] = cls
        cls.registry_name = name
        return cls
    return wrap


def available(kind: str) -> list[str]:
    return sorted(_REGISTRY[kind])


def build(kind: str, config: dict) -> nn.Module:
    """Build a registered module from ``{"name": ..., **kwargs}``; unknown names say what exists."""
    config = dict(config)
    name = config.pop("name", None)
    if name not in _REGISTRY[kind]:
        raise UsageError(f"unknown {kind} {name!r}; available: {', '.join(available(kind))}")
    return _REGISTRY[kind][name](**config)
