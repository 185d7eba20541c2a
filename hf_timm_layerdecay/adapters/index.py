"""The index of a model: what every stage of one call asks of it, built once and passed down.

An entry point builds one :class:`ModelIndex` (:func:`index_model`) and hands it to the adapters,
the weight-decay rules and the checks. It holds the model's parameters in ``named_parameters()``
order with their other paths, every module by path, the model inside its wrappers, canonical
names without wrapper prefixes and the shapes the model defines (FSDP1 flattens them). The walk
of a submodule an adapter needs (a backbone, a region) is made once per index
(:meth:`ModelIndex.walk_of`). A model changed after its index was built (a parameter frozen or
added) is not seen by that index: build a new one.

An adapter can be tested with an index of any module: ``index_model(module)``.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Optional

from torch import nn

from .walk import Walk, walk
from .wrappers import canonical_name, fsdp1_original_shapes, has_internal_levels, refuse_flat_parameters, unwrap

if TYPE_CHECKING:
    from .registry import Adapter


@dataclass(frozen=True, eq=False)
class ModelIndex:
    """One model, indexed.

    Attributes:
        model: the model as given (wrapped or not).
        found: its walk: parameters, their aliases, every module path.
        inner: the innermost wrapped model (the model itself when it is not wrapped).
        canonical_of: name as the given model reports it -> canonical name (wrapper levels
            removed), for every parameter, trainable or not, each once.
        shape_of: reported name -> shape of the parameter as the model defines it (FSDP1 turns
            parameters into 1-D shards outside forward; the "at most one dimension: no weight
            decay" rule must still see matrices as matrices).
        wrapped: whether ``inner`` is a module inside the model given, not the model itself.
        renamed: whether any canonical name differs from the reported one.
    """

    model: nn.Module
    found: Walk
    inner: nn.Module
    canonical_of: dict[str, str]
    shape_of: dict[str, tuple[int, ...]]
    wrapped: bool = False
    renamed: bool = False
    _walks: dict = field(default_factory=dict, repr=False)

    @property
    def named(self) -> list[tuple[str, nn.Parameter]]:
        """``list(model.named_parameters())``: each parameter once, under its first path."""
        return self.found.named

    @property
    def names(self) -> list[str]:
        return self.found.names

    @property
    def modules(self) -> dict[str, nn.Module]:
        """Every module path -> module, shared modules under each path, ``""`` the model itself."""
        return self.found.modules

    def walk_of(self, module: nn.Module) -> Walk:
        """The walk of ``module`` (the model, the model inside, any submodule), made once per index."""
        if module is self.model:
            return self.found
        hit = self._walks.get(id(module))
        if hit is None or hit[0] is not module:
            hit = self._walks[id(module)] = (module, walk(module))
        return hit[1]

    def of(self, module: nn.Module) -> "ModelIndex":
        """The index of a module of this model (the model inside its wrappers, a backbone), sharing
        this index's walks."""
        if module is self.model:
            return self
        found = self.walk_of(module)
        names = found.names
        return ModelIndex(module, found, module, dict(zip(names, names)),
                          {name: full_shape(param) for name, param in found.named}, _walks=self._walks)

    @functools.cached_property
    def adapter(self) -> Optional["Adapter"]:
        """The adapter of the model inside (:func:`~.registry.find_adapter`), asked once."""
        from .registry import find_adapter  # the registry's adapters take indexes: imported late

        return find_adapter(self.of(self.inner))


def full_shape(param: nn.Parameter) -> tuple[int, ...]:
    """The parameter's shape; its whole shape when DeepSpeed ZeRO-3 partitioned it (``zero.Init``,
    the Trainer's ``from_pretrained`` under ZeRO-3), whose tensor is then empty, ``(0,)``, and
    would look 1-D (not weight-decayed) to the weight-decay rule.

    Example:
        >>> import torch
        >>> weight = nn.Parameter(torch.empty(0))
        >>> weight.ds_shape = torch.Size([4, 4])  # what zero.Init leaves
        >>> full_shape(weight), full_shape(nn.Parameter(torch.ones(2)))
        ((4, 4), (2,))
    """
    return tuple(getattr(param, "ds_shape", None) or param.shape)


def index_model(model: nn.Module) -> ModelIndex:
    """Walk ``model`` once, see through its wrappers and pair every reported name with its
    canonical name.

    Example:
        >>> index = index_model(nn.Sequential(nn.Linear(2, 2)))
        >>> index.names, index.canonical_of["0.weight"], index.inner is index.model
        (['0.weight', '0.bias'], '0.weight', True)
    """
    found = walk(model)
    named = found.named
    inner = unwrap(model)
    names = found.names
    refuse_flat_parameters(named)
    shape_of = {name: full_shape(param) for name, param in named}
    if inner is model and not has_internal_levels(names):  # the usual case
        return ModelIndex(model, found, inner, dict(zip(names, names)), shape_of)
    walks: dict = {}  # the inner model's walk, kept for the adapters
    canonical_by_id = {}
    if inner is not model:
        walks[id(inner)] = (inner, walk(inner))
        canonical_by_id = {id(p): canonical_name(n) for n, p in walks[id(inner)][1].named}
    original_shapes = fsdp1_original_shapes(found)
    canonical_of = {}
    for name, param in named:
        # a parameter the wrapper holds itself keeps its own name
        canonical = canonical_by_id.get(id(param)) or canonical_name(name)
        canonical_of[name] = canonical
        if canonical in original_shapes:
            shape_of[name] = original_shapes[canonical]
    renamed = any(name != canonical for name, canonical in canonical_of.items())
    return ModelIndex(model, found, inner, canonical_of, shape_of, wrapped=inner is not model, renamed=renamed,
                      _walks=walks)


def as_index(model: "nn.Module | ModelIndex") -> ModelIndex:
    """``model`` itself if it is an index, else its index (for the adapters' module-level
    functions, which callers may still give a model)."""
    return model if isinstance(model, ModelIndex) else index_model(model)
