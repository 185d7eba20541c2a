"""See through the wrappers that training code puts around a model.

``DistributedDataParallel``/``DataParallel`` (``module.``), DeepSpeed engines (``module.``),
``torch.compile`` (``_orig_mod.``) and FSDP1 (``_fsdp_wrapped_module.``) add a level to the
module tree and a prefix to every parameter name. Layer ids are derived on the model inside,
under *canonical* names without those levels, so a name rule written for the bare model keeps
working on the wrapped one; results are reported under the names the wrapped model uses.
"""

from __future__ import annotations

from typing import Sequence

from torch import nn

from .walk import Walk

#: Attribute names under which wrappers keep the wrapped module.
WRAPPER_ATTRIBUTES = ("module", "_orig_mod", "_fsdp_wrapped_module", "_checkpoint_wrapped_module")
#: Of those, the ones that never name a real layer and can be dropped anywhere in a name; they
#: also wrap single layers inside a model (compiled, FSDP1- or checkpoint-wrapped blocks).
LAYER_WRAPPER_ATTRIBUTES = WRAPPER_ATTRIBUTES[1:]
_INTERNAL_LEVELS = frozenset(LAYER_WRAPPER_ATTRIBUTES)


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


def has_internal_levels(names: Sequence[str]) -> bool:
    """Whether any name runs through a wrapper level inside the model (a compiled, FSDP1- or
    checkpoint-wrapped block); one search over all names joined, since this runs on every call."""
    joined = "\n".join(names)
    return any(level in joined for level in _INTERNAL_LEVELS)


def refuse_flat_parameters(named: Sequence[tuple[str, nn.Parameter]]) -> None:
    """Refuse FSDP1 flat parameters (``use_orig_params=False``), naming the fix."""
    # one look per parameter class, not per parameter: this runs on every call
    if not any(kind.__name__ == "FlatParameter" for kind in {type(param) for _, param in named}):
        return
    name = next(name for name, param in named if type(param).__name__ == "FlatParameter")
    raise ValueError(
        f"{name!r} is an FSDP flat parameter: with use_orig_params=False FSDP merges a whole wrapped "
        "module into one tensor, so per-layer groups are impossible. Wrap with use_orig_params=True "
        "(Trainer: fsdp_config={'use_orig_params': True}) or use FSDP2 (fully_shard)."
    )


def fsdp1_original_shapes(found: Walk) -> dict[str, tuple[int, ...]]:
    """Canonical name -> original shape, for parameters FSDP1 has flattened (none without FSDP1)."""
    shapes = {}
    if not any(_FSDP1_LEVEL in path for path in found.modules):
        return shapes
    for path, module in found.modules.items():
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
