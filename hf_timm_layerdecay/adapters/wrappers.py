"""See through the wrappers that training code puts around a model.

``DistributedDataParallel``/``DataParallel`` (``module.``), DeepSpeed engines (``module.``),
``torch.compile`` (``_orig_mod.``) and FSDP1 (``_fsdp_wrapped_module.``) add a level to the
module tree and a prefix to every parameter name. Layer ids are derived on the model inside,
under *canonical* names without those levels, so a name rule written for the bare model keeps
working on the wrapped one; results are reported under the names the wrapped model uses.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

#: Attribute names under which wrappers keep the wrapped module.
WRAPPER_ATTRIBUTES = ("module", "_orig_mod", "_fsdp_wrapped_module", "_checkpoint_wrapped_module")
#: Of those, the ones that never name a real layer and can be dropped anywhere in a name.
_INTERNAL_LEVELS = frozenset(WRAPPER_ATTRIBUTES[1:])


@dataclass(frozen=True)
class ModelView:
    """A model seen through its wrappers.

    Attributes:
        inner: the innermost wrapped model (the model itself when it is not wrapped).
        canonical_of: name as the given model reports it -> canonical name (wrapper levels
            removed). Covers every parameter, trainable or not, each once.
    """

    inner: nn.Module
    canonical_of: dict[str, str]

    @property
    def outer_of(self) -> dict[str, str]:
        """Canonical name -> name as the given model reports it."""
        return {canonical: outer for outer, canonical in self.canonical_of.items()}


def unwrap(model: nn.Module) -> nn.Module:
    """The model inside any number of wrappers (a module with one child named like
    :data:`WRAPPER_ATTRIBUTES` and no parameters of its own)."""
    while True:
        children = list(model._modules.items())
        if len(children) != 1 or children[0][0] not in WRAPPER_ATTRIBUTES:
            return model
        if any(True for _ in model.parameters(recurse=False)):
            return model
        model = children[0][1]


def view(model: nn.Module) -> ModelView:
    """Unwrap ``model`` and pair every parameter's reported name with its canonical name."""
    inner = unwrap(model)
    canonical_by_id = {id(p): canonical_name(n) for n, p in inner.named_parameters()}
    canonical_of = {}
    for name, param in model.named_parameters():
        canonical = canonical_by_id.get(id(param))
        if canonical is None:  # a parameter the wrapper holds itself: keep its own name
            canonical = canonical_name(name)
        canonical_of[name] = canonical
    return ModelView(inner, canonical_of)


def canonical_name(name: str) -> str:
    """Drop wrapper levels inside a name: ``blocks.0._orig_mod.attn.qkv.weight`` ->
    ``blocks.0.attn.qkv.weight``.

    Example:
        >>> canonical_name("_fsdp_wrapped_module.layers.3._checkpoint_wrapped_module.mlp.weight")
        'layers.3.mlp.weight'
    """
    return ".".join(part for part in name.split(".") if part not in _INTERNAL_LEVELS)
