"""Model adapters: derive a :class:`~hf_timm_layerdecay.core.layer_map.LayerMap` from a model.

One adapter per model family, in a typed registry (:mod:`.registry`): the built-in ones are the
packages :mod:`.timm` and :mod:`.transformers`; :func:`~.registry.register_adapter` adds your own
(a family's rule, or a recipe's rule bound to its model classes with
:class:`~.registry.RuleAdapter`). An adapter is given the model's :class:`~.index.ModelIndex`
(the model walked once, ``index.model`` unwrapped) and provides (:class:`~.registry.Adapter`)

* ``applies(index) -> bool``: cheap, and without importing its framework unless the model
  comes from it (check ``type(index.model).__module__`` first);
* ``layer_map(index, options: AutoStrategy) -> LayerMap``: ids for every parameter of the
  model, keyed as its ``named_parameters()`` names them;
* ``no_weight_decay_names(index) -> set[str]``: parameters the family never weight-decays
  although a model may not list them in its ``no_weight_decay()`` (timm's multi-dimensional
  position tables and tokens);
* ``options``: the :class:`AutoStrategy` options it reads besides ``granularity``.

:func:`infer_layer_map` asks the first adapter that applies and falls back to :mod:`.structural`,
which works on any ``nn.Module``; the mechanics the adapters share (containers, splitting a block
into the blocks it holds, run order, wrappers, paths, the index) live in :mod:`.tree`,
:mod:`.run_order`, :mod:`.wrappers`, :mod:`.paths`, :mod:`.index` and :mod:`.walk`.
"""

from __future__ import annotations

from typing import Optional, Union

from torch import nn

from ..core.layer_map import LayerMap
from . import structural
from .index import ModelIndex, as_index, index_model
from .options import AutoStrategy
from .registry import Adapter, RuleAdapter, find_adapter, register_adapter, registered_adapters, unregister_adapter

__all__ = [
    "Adapter", "FAMILY_ADAPTERS", "ModelIndex", "RuleAdapter", "family_no_weight_decay", "find_adapter", "index_model",
    "infer_layer_map", "register_adapter", "registered_adapters", "unregister_adapter",
]

#: The names of the built-in adapters, asked after the registered ones (kept for old imports;
#: :func:`registered_adapters` lists them all).
FAMILY_ADAPTERS = ("timm", "transformers")
_UNSET = object()


def infer_layer_map(
    model: Union[nn.Module, ModelIndex], options: AutoStrategy = AutoStrategy(), adapter: Optional[Adapter] = _UNSET
) -> LayerMap:
    """Layer ids for an unwrapped model (or the model of an index): its family's adapter, else the
    module structure.

    ``adapter``: the adapter found for the model already (:func:`find_adapter`; ``None``: none
    applies), so that one call asks the registry once. An option that the chosen adapter does not
    read (``tower`` on a timm model) is an error, not silently ignored.
    """
    index = as_index(model)
    model = index.model
    if adapter is _UNSET:
        adapter = find_adapter(index)
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
        return structural.structural_layer_map(index, granularity=options.granularity)
    return chosen.layer_map(index, options)


def family_no_weight_decay(model: Union[nn.Module, ModelIndex], adapter: Optional[Adapter] = _UNSET) -> set[str]:
    """Names (of an unwrapped model, or the model of an index) that its family's adapter excludes
    from weight decay."""
    index = as_index(model)
    if adapter is _UNSET:
        adapter = find_adapter(index)
    return adapter.no_weight_decay_names(index) if adapter is not None else set()
