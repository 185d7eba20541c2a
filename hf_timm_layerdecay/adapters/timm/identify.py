"""Which modules are timm models, and which of their parameters are the classifier."""

from __future__ import annotations

import functools
import logging
from typing import Optional, Union

from torch import nn

from ..index import ModelIndex, as_index

logger = logging.getLogger(__name__)

_TIMM_MODELS = "timm.models."
_TRANSFORMERS = "transformers."


def is_timm_model(module: nn.Module) -> bool:
    """A timm model: an instance of a class from ``timm.models`` (or of a user's subclass of one)
    with timm's model interface, or one of timm's feature extractors; not a building block.

    Example:
        >>> from torch import nn
        >>> is_timm_model(nn.Linear(2, 2))
        False
    """
    if not _is_timm_class(type(module)):
        return False
    return any(hasattr(module, attribute) for attribute in ("pretrained_cfg", "group_matcher", "get_classifier"))


@functools.lru_cache(maxsize=None)
def _is_timm_class(cls: type) -> bool:
    # cached: asked for every module of every model that auto_layer_decay sees
    return any(base.__module__.startswith(_TIMM_MODELS) for base in cls.__mro__)


def single_timm_model(model: Union[nn.Module, ModelIndex]) -> Optional[tuple[str, nn.Module]]:
    """(path, module) of the one outermost timm model inside ``model``, or None when there is
    none, more than one, or the model also holds a transformers model of its own.

    transformers modules that only wrap the timm model are no such model: transformers'
    ``TimmWrapperModel`` / ``TimmWrapperForImageClassification`` (what ``AutoModel`` loads for a
    ``timm/...`` checkpoint) hold their timm model in ``timm_model``, and it keeps timm's ids. So do
    transformers modules without parameters (an activation). A transformers module beside the
    timm model that holds parameters (a DETR's encoder around its timm backbone, a BERT text tower)
    leaves the model to the transformers adapter.
    """
    index = as_index(model)
    modules = index.modules
    if not any(map(_is_timm_class, set(map(type, modules.values())))):
        return None  # the usual answer, from the set of classes instead of every module
    found: list[tuple[str, nn.Module]] = []
    transformers_paths: list[str] = []
    visited: set[int] = set()
    for path, module in modules.items():
        if id(module) in visited:  # a module under a second path (shared)
            continue
        visited.add(id(module))
        if found and any(path.startswith(p + ".") for p, _ in found):
            continue
        if type(module).__module__.startswith(_TRANSFORMERS):
            transformers_paths.append(path)
        elif path and is_timm_model(module):
            found.append((path, module))
    if len(found) != 1 or not index.walk_of(found[0][1]).named:
        return None
    inside = found[0][0] + "."
    for path in transformers_paths:
        wraps_it = not path or inside.startswith(path + ".")
        if not wraps_it and index.walk_of(modules[path]).named:
            return None
    return found[0]


def classifier_names(model: Union[nn.Module, ModelIndex]) -> set[str]:
    """Names of the classifier's parameters: ``get_classifier()`` (a module or a tuple of them,
    like DeiT's ``head`` and ``head_dist``) and the prefixes in ``pretrained_cfg["classifier"]``.

    Example:
        >>> import timm, torch
        >>> with torch.device("meta"):
        ...     deit = timm.create_model("deit_tiny_distilled_patch16_224", pretrained=False)
        >>> sorted(classifier_names(deit))
        ['head.bias', 'head.weight', 'head_dist.bias', 'head_dist.weight']
    """
    index = as_index(model)
    model = index.model
    owned: set[int] = set()
    get_classifier = getattr(model, "get_classifier", None)
    if callable(get_classifier):
        try:
            heads = get_classifier()
        except Exception as exc:  # noqa: BLE001 - a model's own method may fail on a headless build
            logger.debug("%s.get_classifier() failed: %s", type(model).__name__, exc)
            heads = ()
        for head in heads if isinstance(heads, (tuple, list)) else (heads,):
            if isinstance(head, nn.Module):
                owned.update(id(p) for _, p in index.walk_of(head).named)
    prefixes = (getattr(model, "pretrained_cfg", None) or {}).get("classifier") or ()
    prefixes = (prefixes,) if isinstance(prefixes, str) else tuple(prefixes)
    below = tuple(p + "." for p in prefixes)
    names = set()
    for name, param in index.named:
        if id(param) in owned or name in prefixes or name.startswith(below):
            names.add(name)
    return names


def summarize(names: list[str], show: int = 3) -> str:
    modules = list(dict.fromkeys(n.rsplit(".", 1)[0] if "." in n else n for n in names))
    more = f", ... ({len(modules)} modules)" if len(modules) > show else ""
    return ", ".join(repr(m) for m in modules[:show]) + more
