"""Model adapters: derive a :class:`~hf_timm_layerdecay.core.layer_map.LayerMap` from a model.

One module per model family, listed in :data:`FAMILY_ADAPTERS`. Each exposes

* ``applies(model) -> bool``: cheap, and without importing its framework unless the model
  comes from it (check ``type(model).__module__`` first);
* ``layer_map(model, options: AutoStrategy) -> LayerMap``: ids for every parameter of the
  (unwrapped) model, keyed as its ``named_parameters()`` names them;
* optionally ``no_weight_decay_names(model) -> set[str]``: parameters the family never
  weight-decays although a model may not list them in its ``no_weight_decay()`` (timm's
  multi-dimensional position tables and tokens).

:func:`infer_layer_map` asks them in order and falls back to :mod:`.structural`, which works on
any ``nn.Module``. A new family's rule goes into its framework's adapter, or a new module here
added to :data:`FAMILY_ADAPTERS`.
"""

from __future__ import annotations

import importlib
import importlib.util

from torch import nn

from ..core.layer_map import LayerMap
from . import structural
from .options import AutoStrategy

#: Adapter modules of this package, asked in this order.
FAMILY_ADAPTERS = ("timm", "transformers")


def infer_layer_map(model: nn.Module, options: AutoStrategy = AutoStrategy()) -> LayerMap:
    """Layer ids for an unwrapped model: its family's adapter, else the module structure.

    An option that the chosen adapter does not read (``tower`` on a timm model) is an error, not
    silently ignored; an adapter lists those it reads in ``OPTIONS``.
    """
    chosen = structural
    if options.family_adapters:
        chosen = next((adapter for adapter in _family_adapters() if adapter.applies(model)), structural)
    ignored = options.model_specific() - getattr(chosen, "OPTIONS", frozenset())
    if ignored:
        rule = chosen.__name__.rpartition(".")[2]
        raise ValueError(
            f"AutoStrategy({', '.join(f'{k}={getattr(options, k)!r}' for k in sorted(ignored))}) has no effect on "
            f"{type(model).__name__}, which the {rule} rule numbers: these options apply to transformers models with "
            "towers, an encoder and a decoder, or a tied output embedding. Leave them at their defaults"
        )
    if chosen is structural:
        return structural.structural_layer_map(model, granularity=options.granularity)
    return chosen.layer_map(model, options)


def family_no_weight_decay(model: nn.Module) -> set[str]:
    """Names (of an unwrapped model) that its family's adapter excludes from weight decay."""
    for adapter in _family_adapters():
        if adapter.applies(model):
            names = getattr(adapter, "no_weight_decay_names", None)
            return set(names(model)) if names is not None else set()
    return set()


def _family_adapters() -> list:
    modules = []
    for name in FAMILY_ADAPTERS:
        if importlib.util.find_spec(f"{__name__}.{name}") is not None:
            modules.append(importlib.import_module(f"{__name__}.{name}"))
    return modules
