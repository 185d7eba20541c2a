"""The adapters ``strategy="auto"`` asks, in order: a typed registry anyone can add to.

An adapter turns a model of one family into a :class:`~hf_timm_layerdecay.core.layer_map.LayerMap`
(:class:`Adapter`). The built-in ones (timm, transformers) are modules of this package, imported on
first use; :func:`register_adapter` puts one of your own before them, for example a recipe's
``name -> id`` rule bound to the model classes it was written for (:class:`RuleAdapter`). The first
adapter whose ``applies`` accepts the model decides; none: the module structure
(:mod:`.structural`).

Example:
    >>> import torch
    >>> from hf_timm_layerdecay import auto_layer_decay
    >>> class TwoLayers(torch.nn.Sequential):
    ...     pass
    >>> adapter = register_adapter(RuleAdapter("two_layers", lambda name: int(name[0]), (TwoLayers,)))
    >>> model = TwoLayers(torch.nn.Linear(2, 2), torch.nn.Linear(2, 2))
    >>> [g["name"] for g in auto_layer_decay(model, lr=1.0, layer_decay=0.5)][:2]
    ['layer_0_decay', 'layer_0_no_decay']
    >>> find_adapter(model).name
    'two_layers'
    >>> unregister_adapter("two_layers")
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Callable, Optional, Protocol, Union, runtime_checkable

from torch import nn

from ..core.layer_map import LayerMap
from ..core.strategies import layer_map_from_rule
from ..core.weight_decay import NameMatcher
from .index import ModelIndex, as_index
from .options import AutoStrategy


@runtime_checkable
class Adapter(Protocol):
    """What a model family's adapter provides.

    Attributes:
        name: a short name, unique in the registry (``"timm"``).
        options: the :class:`AutoStrategy` options it reads besides ``granularity``
            (``"tower"``, ``"encoder_decoder"``, ``"tied_head"``); one set away from its default
            on a model this adapter numbers is an error, not silently ignored.
    """

    name: str
    options: frozenset[str]

    def applies(self, index: ModelIndex) -> bool:
        """Whether this adapter numbers ``index.model`` (cheap; import no framework the model is not from)."""

    def layer_map(self, index: ModelIndex, options: AutoStrategy) -> LayerMap:
        """Ids for every parameter of ``index.model`` (unwrapped), keyed as ``named_parameters()`` names them."""

    def no_weight_decay_names(self, index: ModelIndex) -> set[str]:
        """Parameters the family never weight-decays although the model may not list them."""


@dataclass(frozen=True)
class ModuleAdapter:
    """A built-in adapter: a module of this package with ``applies``, ``layer_map`` and optionally
    ``OPTIONS`` and ``no_weight_decay_names``, imported when first asked."""

    name: str
    module: str

    def _module(self):
        return importlib.import_module(self.module)

    @property
    def options(self) -> frozenset[str]:
        return getattr(self._module(), "OPTIONS", frozenset())

    def applies(self, index: ModelIndex) -> bool:
        return self._module().applies(index)

    def layer_map(self, index: ModelIndex, options: AutoStrategy) -> LayerMap:
        return self._module().layer_map(index, options)

    def no_weight_decay_names(self, index: ModelIndex) -> set[str]:
        names = getattr(self._module(), "no_weight_decay_names", None)
        return set(names(index)) if names is not None else set()


@dataclass(frozen=True)
class RuleAdapter:
    """A ``canonical name -> layer id`` rule (BEiT's :func:`~hf_timm_layerdecay.get_num_layer_for_vit`
    with its frame, ConvNeXt's, one of your own) for the models that are instances of
    ``model_classes``. Its frame is ``max id + 1``.

    Attributes:
        no_weight_decay: names (parameter or module names, globs) never weight-decayed on these models.
    """

    name: str
    rule: Callable[[str], int]
    model_classes: tuple[type, ...]
    no_weight_decay: tuple[str, ...] = field(default=())
    options: frozenset[str] = field(default=frozenset())

    def applies(self, index: ModelIndex) -> bool:
        return isinstance(index.model, self.model_classes)

    def layer_map(self, index: ModelIndex, options: AutoStrategy) -> LayerMap:
        return layer_map_from_rule(index.names, self.rule)

    def no_weight_decay_names(self, index: ModelIndex) -> set[str]:
        return NameMatcher(self.no_weight_decay).matching(index.names)


#: The built-in adapters, asked after the registered ones.
BUILT_IN: tuple[Adapter, ...] = (
    ModuleAdapter("timm", f"{__package__}.timm"),
    ModuleAdapter("transformers", f"{__package__}.transformers"),
)
_registered: list[Adapter] = []


def register_adapter(adapter: Adapter) -> Adapter:
    """Ask ``adapter`` before the adapters registered earlier and the built-in ones.

    A name already in use is an error (:func:`unregister_adapter` it first), and so is an object
    that is no :class:`Adapter`. Returns the adapter.
    """
    if not isinstance(adapter, Adapter) or not isinstance(adapter.name, str) or not adapter.name:
        raise TypeError(
            f"{adapter!r} is no adapter: it needs a name, options, and the methods applies(model), "
            "layer_map(model, options) and no_weight_decay_names(model) (see hf_timm_layerdecay.adapters.registry.Adapter)"
        )
    taken = [a.name for a in registered_adapters()]
    if adapter.name in taken:
        raise ValueError(f"an adapter named {adapter.name!r} is registered already; unregister_adapter({adapter.name!r}) "
                         f"first. Registered: {taken}")
    _registered.insert(0, adapter)
    return adapter


def unregister_adapter(name: str) -> None:
    """Remove the adapter registered under ``name`` (the built-in ones stay)."""
    for adapter in _registered:
        if adapter.name == name:
            _registered.remove(adapter)
            return
    raise KeyError(f"no registered adapter named {name!r}; registered: {[a.name for a in _registered]}")


def registered_adapters() -> list[Adapter]:
    """Every adapter, in the order they are asked."""
    return [*_registered, *BUILT_IN]


def find_adapter(model: Union[nn.Module, ModelIndex]) -> Optional[Adapter]:
    """The first adapter that applies to an (unwrapped) model or the model of an index, or ``None``."""
    index = as_index(model)
    return next((adapter for adapter in registered_adapters() if adapter.applies(index)), None)
