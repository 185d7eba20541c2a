"""See through the wrappers that training code puts around a model.

``DistributedDataParallel``/``DataParallel`` (``module.``), DeepSpeed engines (``module.``),
``torch.compile`` (``_orig_mod.``) and FSDP1 (``_fsdp_wrapped_module.``) add a level to the
module tree and a prefix to every parameter name. Layer ids are derived on the model inside,
under *canonical* names without those levels, so a name rule written for the bare model keeps
working on the wrapped one; results are reported under the names the wrapped model uses.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Optional, Sequence

from torch import nn

from .registry import Adapter, find_adapter
from .walk import walk

#: Attribute names under which wrappers keep the wrapped module.
WRAPPER_ATTRIBUTES = ("module", "_orig_mod", "_fsdp_wrapped_module", "_checkpoint_wrapped_module")
#: Of those, the ones that never name a real layer and can be dropped anywhere in a name; they
#: also wrap single layers inside a model (compiled, FSDP1- or checkpoint-wrapped blocks).
LAYER_WRAPPER_ATTRIBUTES = WRAPPER_ATTRIBUTES[1:]
_INTERNAL_LEVELS = frozenset(LAYER_WRAPPER_ATTRIBUTES)


@dataclass(frozen=True)
class ModelView:
    """A model seen through its wrappers.

    Attributes:
        inner: the innermost wrapped model (the model itself when it is not wrapped).
        canonical_of: name as the given model reports it -> canonical name (wrapper levels
            removed). Covers every parameter, trainable or not, each once.
        shape_of: name as the given model reports it -> shape of the parameter as the model
            defines it. FSDP1 turns parameters into 1-D shards outside forward;
            their original shapes come from its flat-parameter metadata, so that the "at most
            one dimension: no weight decay" rule still sees matrices as matrices.
        wrapped: whether ``inner`` is a module inside the model given, not the model itself.
        renamed: whether any canonical name differs from the reported one.
        named: ``list(model.named_parameters())`` of the given model (each parameter once).
    """

    inner: nn.Module
    canonical_of: dict[str, str]
    shape_of: dict[str, tuple[int, ...]]
    wrapped: bool = False
    renamed: bool = False
    named: list = field(default_factory=list)

    @functools.cached_property
    def adapter(self) -> Optional[Adapter]:
        """The adapter of the model inside (:func:`~.registry.find_adapter`), asked once."""
        return find_adapter(self.inner)


def unwrap(model: nn.Module) -> nn.Module:
    """The model inside any number of wrappers (a module with one child named like
    :data:`WRAPPER_ATTRIBUTES` and no parameters of its own)."""
    while True:
        children = list(model._modules.items())
        if len(children) != 1 or children[0][0] not in WRAPPER_ATTRIBUTES:
            return model
        if any(param is not None for param in model._parameters.values()):
            return model
        model = children[0][1]


def view(model: nn.Module) -> ModelView:
    """Unwrap ``model`` and pair every parameter's reported name with its canonical name."""
    named = walk(model).named
    inner = unwrap(model)
    names = [name for name, _ in named]
    joined = "\n".join(names)
    _refuse_flat_parameters(named)
    shape_of = {name: tuple(param.shape) for name, param in named}
    if inner is model and not any(level in joined for level in _INTERNAL_LEVELS):  # the usual case
        return ModelView(inner, dict(zip(names, names)), shape_of, named=named)
    canonical_by_id = {} if inner is model else {id(p): canonical_name(n) for n, p in walk(inner).named}
    original_shapes = _fsdp1_original_shapes(model) if _FSDP1_LEVEL in joined else {}
    canonical_of = {}
    for name, param in named:
        # a parameter the wrapper holds itself keeps its own name
        canonical = canonical_by_id.get(id(param)) or canonical_name(name)
        canonical_of[name] = canonical
        if canonical in original_shapes:
            shape_of[name] = original_shapes[canonical]
    renamed = any(name != canonical for name, canonical in canonical_of.items())
    return ModelView(inner, canonical_of, shape_of, wrapped=inner is not model, renamed=renamed, named=named)


def _refuse_flat_parameters(named: Sequence[tuple[str, nn.Parameter]]) -> None:
    # one look per parameter class, not per parameter: this runs on every call
    if not any(kind.__name__ == "FlatParameter" for kind in {type(param) for _, param in named}):
        return
    name = next(name for name, param in named if type(param).__name__ == "FlatParameter")
    raise ValueError(
        f"{name!r} is an FSDP flat parameter: with use_orig_params=False FSDP merges a whole wrapped "
        "module into one tensor, so per-layer groups are impossible. Wrap with use_orig_params=True "
        "(Trainer: fsdp_config={'use_orig_params': True}) or use FSDP2 (fully_shard)."
    )


def _fsdp1_original_shapes(model: nn.Module) -> dict[str, tuple[int, ...]]:
    """Canonical name -> original shape, for parameters FSDP1 has flattened."""
    shapes = {}
    for path, module in walk(model).modules.items():
        if type(module).__name__ != "FullyShardedDataParallel":
            continue
        flat = getattr(getattr(module, "_handle", None), "flat_param", None)
        for fqn, shape in zip(getattr(flat, "_fqns", ()), getattr(flat, "_shapes", ())):
            shapes[canonical_name(f"{path}.{fqn}" if path else fqn)] = tuple(shape)
    return shapes


_FSDP1_LEVEL = "_fsdp_wrapped_module"


def canonical_name(name: str) -> str:
    """Drop wrapper levels inside a name: ``blocks.0._orig_mod.attn.qkv.weight`` ->
    ``blocks.0.attn.qkv.weight``.

    Example:
        >>> canonical_name("_fsdp_wrapped_module.layers.3._checkpoint_wrapped_module.mlp.weight")
        'layers.3.mlp.weight'
    """
    if not any(level in name for level in _INTERNAL_LEVELS):  # the common case, without a split
        return name
    return ".".join(part for part in name.split(".") if part not in _INTERNAL_LEVELS)
