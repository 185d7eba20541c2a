"""A user model holding one timm model (a backbone with a new head, neck or decoder)."""

from __future__ import annotations

from torch import nn

from ...core.layer_map import LayerMap
from ...core.weight_decay import NameMatcher, no_weight_decay_list
from ..run_order import reads_forward, reported_run_order
from ..index import ModelIndex
from .identify import summarize
from .naming import is_position_or_token


def user_wrapper_map(index: ModelIndex, path: str, backbone: nn.Module, inner: LayerMap) -> LayerMap:
    """The timm model at ``path`` keeps its own ids (``inner``); the rest of the user model is
    placed around it by the order it runs in (:mod:`..run_order`): what runs before the timm model
    (an input adapter) takes id 0, what runs after it (a new head, a neck, a decoder, a learned
    temperature) the head id."""
    model = index.model
    inner_id = {id(p): inner.ids[n] for n, p in index.walk_of(backbone).named}
    head = inner.head_id
    named = index.named
    params = dict(named)
    holders = [m for p, m in index.modules.items() if p == "" or path.startswith(p + ".")]
    readable = all(reads_forward(m) for m in holders)
    order = _wrapper_order(reported_run_order(model, params) if readable else list(params))
    ids: dict[str, int] = {}
    before: list[str] = []
    after: list[str] = []
    seen_backbone = False
    for name in order:
        param = params[name]
        if id(param) in inner_id:
            ids[name] = inner_id[id(param)]
            seen_backbone = True
        elif seen_backbone:
            ids[name] = head
            after.append(name)
        else:
            ids[name] = 0
            before.append(name)
    notes = [f"timm model {path!r} ({type(backbone).__name__}) keeps its own ids", *inner.notes]
    if not readable:
        notes.append(
            f"no forward source for {type(model).__name__} (or a module around {path!r}): the order of registration "
            "is taken as the order of running"
        )
    if after:
        notes.append(f"{summarize(after)}, run after {path!r}, take the head id {head}")
    if before:
        notes.append(f"{summarize(before)}, run before {path!r}, take id 0 (input layers)")
    return LayerMap({name: ids[name] for name, _ in named}, inner.num_layers, tuple(notes))


def _wrapper_order(names: list[str]) -> list[str]:
    """``names`` with the parameters of the wrapper itself moved last: they act on the output (a
    learned temperature or scale), unless they are position tables or tokens."""
    own = [name for name in names if "." not in name and not is_position_or_token(name)]
    moved = set(own)
    return [name for name in names if name not in moved] + own


def listed_no_weight_decay(index: ModelIndex, path: str, backbone: nn.Module) -> set[str]:
    """The names the timm model at ``path`` lists in its ``no_weight_decay()`` (parameters or
    modules), as parameter names of the model holding it."""
    inner = index.walk_of(backbone).names
    return {f"{path}.{name}" for name in NameMatcher(no_weight_decay_list(backbone)).matching(inner)}
