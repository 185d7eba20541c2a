"""A user model holding one timm model (a backbone with a new head, neck or decoder)."""

from __future__ import annotations

from torch import nn

from ...core.layer_map import LayerMap
from ...core.weight_decay import NameMatcher, no_weight_decay_list
from ..walk import walk
from .identify import summarize
from .naming import is_position_or_token


def user_wrapper_map(model: nn.Module, path: str, backbone: nn.Module, inner: LayerMap) -> LayerMap:
    """The timm model at ``path`` keeps its own ids (``inner``); the rest of the user model is
    placed around it."""
    inner_id = {id(p): inner.ids[n] for n, p in walk(backbone).named}
    head = inner.num_layers - 1
    ids: dict[str, int] = {}
    before: list[str] = []
    after: list[str] = []
    seen_backbone = False
    for name, param in walk(model).named:
        if id(param) in inner_id:
            ids[name] = inner_id[id(param)]
            seen_backbone = True
        elif seen_backbone or ("." not in name and not is_position_or_token(name)):
            # Parameters of the wrapper itself come first in named_parameters() whatever their
            # use; a learned temperature or scale acts on the output, so it goes with the head.
            ids[name] = head
            after.append(name)
        else:
            ids[name] = 0
            before.append(name)
    notes = [f"timm model {path!r} ({type(backbone).__name__}) keeps its own ids", *inner.notes]
    if after:
        notes.append(f"{summarize(after)}, registered after {path!r} (or held by the wrapper itself), take the head id {head}")
    if before:
        notes.append(
            f"{summarize(before)}, registered before {path!r}, take id 0 (input layers); if they run after it, "
            "register them after it or pass a strategy rule"
        )
    return LayerMap(ids, inner.num_layers, tuple(notes))


def listed_no_weight_decay(path: str, backbone: nn.Module) -> set[str]:
    """The names the timm model at ``path`` lists in its ``no_weight_decay()`` (parameters or
    modules), as parameter names of the model holding it."""
    inner = [name for name, _ in walk(backbone).named]
    return {f"{path}.{name}" for name in NameMatcher(no_weight_decay_list(backbone)).matching(inner)}
