"""Model adapters: derive a :class:`~hf_timm_layerdecay.core.layer_map.LayerMap` from a model.

One module per model family. Each adapter exposes ``applies(model) -> bool`` and
``layer_map(model) -> LayerMap`` and imports its framework lazily, only once ``applies`` has
seen a model of that framework. :func:`infer_layer_map` tries them in order and falls back to
:mod:`.structural`, which works on any ``nn.Module``. A new family's rule goes into the adapter
of its framework (or a new module here, listed in ``_ADAPTERS``).
"""

from __future__ import annotations

from torch import nn

from ..core.layer_map import LayerMap
from . import structural

_ADAPTERS: tuple = ()


def infer_layer_map(model: nn.Module) -> LayerMap:
    """Layer ids for an unwrapped model: its family's adapter, else the module structure."""
    for adapter in _ADAPTERS:
        if adapter.applies(model):
            return adapter.layer_map(model)
    return structural.structural_layer_map(model)
