"""Model adapters: derive a :class:`~hf_timm_layerdecay.core.layer_map.LayerMap` from a model.

One adapter per model family, in a typed registry (:mod:`.registry`): the built-in ones are the
packages :mod:`.timm` and :mod:`.transformers`; :func:`~.registry.register_adapter` adds your own
(a family's rule, or a recipe's rule bound to its model classes with
:class:`~.registry.RuleAdapter`). An adapter provides (:class:`~.registry.Adapter`)

* ``applies(model) -> bool``: cheap, and without importing its framework unless the model
  comes from it (check ``type(model).__module__`` first);
* ``layer_map(model, options: AutoStrategy) -> LayerMap``: ids for every parameter of the
  (unwrapped) model, keyed as its ``named_parameters()`` names them;
* ``no_weight_decay_names(model) -> set[str]``: parameters the family never weight-decays
  although a model may not list them in its ``no_weight_decay()`` (timm's multi-dimensional
  position tables and tokens);
* ``options``: the :class:`AutoStrategy` options it reads besides ``granularity``.

:func:`infer_layer_map` asks the first adapter that applies and falls back to :mod:`.structural`,
which works on any ``nn.Module``; the mechanics the adapters share (containers, splitting a block
into the blocks it holds, run order, wrappers, paths) live in :mod:`.tree`, :mod:`.run_order`,
:mod:`.wrappers`, :mod:`.paths` and :mod:`.walk`.
"""

from __future__ import annotations

from typing import Optional

from torch import nn

from ..core.layer_map import LayerMap
from . import structural
from .options import AutoStrategy
from .registry import Adapter, RuleAdapter, find_adapter, register_adapter, registered_adapters, unregister_adapter

__all__ = [
    "Adapter", "FAMILY_ADAPTERS", "RuleAdapter", "family_no_weight_decay", "find_adapter", "infer_layer_map",
    "register_adapter", "registered_adapters", "unregister_adapter",
]

#: The names of the built-in adapters, asked after the registered ones (kept for old imports;
#: :func:`registered_adapters` lists them all).
FAMILY_ADAPTERS = ("timm", "transformers")
_UNSET = object()


def infer_layer_map(
    model: nn.Module, options: AutoStrategy = AutoStrategy(), adapter: Optional[Adapter] = _UNSET
) -> LayerMap:
    """Layer ids for an unwrapped model: its family's adapter, else the module structure.

    ``adapter``: the adapter found for ``model`` already (:func:`find_adapter`; ``None``: none
    applies), so that one call asks the registry once. An option that the chosen adapter does not
    read (``tower`` on a timm model) is an error, not silently ignored.
    """
    if adapter is _UNSET:
        adapter = find_adapter(model)
    chosen = adapter if options.family_adapters and adapter is not None else None
    ignored = options.model_specific() - (chosen.options if chosen is not None else frozenset())
    if ignored:
        rule = chosen.name if chosen is not None else "structural"
        raise ValueError(
            f"AutoStrategy({', '.join(f'{k}={getattr(options, k)!r}' for k in sorted(ignored))}) has no effect on "
            f"{type(model).__name__}, which the {rule} rule numbers: these options apply to transformers models with "
            "towers, an encoder and a decoder, or a tied output embedding. Leave them at their defaults"
        )
    if chosen is None:
        return structural.structural_layer_map(model, granularity=options.granularity)
    return chosen.layer_map(model, options)


def family_no_weight_decay(model: nn.Module, adapter: Optional[Adapter] = _UNSET) -> set[str]:
    """Names (of an unwrapped model) that its family's adapter excludes from weight decay."""
    if adapter is _UNSET:
        adapter = find_adapter(model)
    return adapter.no_weight_decay_names(model) if adapter is not None else set()
