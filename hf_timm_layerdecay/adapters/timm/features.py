"""timm's feature extractors (``features_only=True``): the ids of the full model they come from."""

from __future__ import annotations

import logging
from typing import Iterator, Optional

from torch import nn

from ..._compat import create_timm_model
from ...core.layer_map import LayerMap
from ..index import ModelIndex, index_model
from ..structural import structural_layer_map
from .grouping import model_map
from .identify import is_timm_model

logger = logging.getLogger(__name__)

#: Attributes under which timm's feature extractors keep the whole model they wrap.
INNER_MODEL_ATTRIBUTES = ("model", "body", "graph_module")


def is_feature_extractor(model: nn.Module) -> bool:
    """timm's feature wrappers (``FeatureListNet``, ``FeatureGetterNet``, ...) and the models'
    own feature classes (``EfficientNetFeatures``): no grouping, no classifier, but the name of
    the architecture they come from."""
    if type(model).__module__.startswith("timm.models._features"):
        return True
    has_architecture = bool((getattr(model, "pretrained_cfg", None) or {}).get("architecture"))
    return has_architecture and not hasattr(model, "group_matcher") and not hasattr(model, "get_classifier")


def feature_extractor_map(index: ModelIndex, granularity: str) -> LayerMap:
    """The ids of the full model the extractor was cut from, so that the scales match it.

    The full model is rebuilt (without weights, on the meta device) from
    ``pretrained_cfg["architecture"]`` and every parameter of the extractor is located in it by
    name and shape. If that fails (a model built with other arguments), the model the extractor
    holds is mapped as it is, or else the extractor's module structure.
    """
    model = index.model
    architecture = (getattr(model, "pretrained_cfg", None) or {}).get("architecture")
    reference = _rebuild_reference(architecture)
    if reference is not None and type(reference) is type(model):  # an encoder-only architecture
        return model_map(index, granularity)
    translated = _translate_names(model, reference) if reference is not None else None
    if translated is not None:
        full = model_map(index_model(reference), granularity)
        ids = {name: full.ids[ref_name] for name, ref_name in translated.items()}
        note = f"features of {architecture!r}: the ids of the full model ({full.num_layers} ids)"
        return LayerMap(ids, full.num_layers, (note,))
    reason = (
        f"the feature extractor's parameters are not those of a default {architecture!r} (built with other arguments?)"
        if reference is not None
        else f"the architecture {architecture!r} of this feature extractor could not be rebuilt"
    )
    for attribute in INNER_MODEL_ATTRIBUTES:
        inner = getattr(model, attribute, None)
        if isinstance(inner, nn.Module) and is_timm_model(inner) and not is_feature_extractor(inner):
            inner_map = model_map(index.of(inner), granularity)
            ids = {f"{attribute}.{name}": i for name, i in inner_map.ids.items()}
            note = f"{reason}; the model it wraps is mapped as it is"
            return LayerMap(ids, inner_map.num_layers, (note, *inner_map.notes))
    structural = structural_layer_map(index, granularity=granularity)
    return LayerMap(structural.ids, structural.num_layers, (f"{reason}; ids from its module structure", *structural.notes))


def _rebuild_reference(architecture: Optional[str]) -> Optional[nn.Module]:
    """The named timm architecture, built without weights on the meta device (on the CPU, with a
    warning, where this timm / torch cannot build it there), or None."""
    if not architecture:
        return None
    try:
        return create_timm_model(architecture, "meta")
    except Exception as exc:  # noqa: BLE001 - any failure means: no reference, use the fallbacks
        logger.debug("could not rebuild %r: %s", architecture, exc)
        return None


def _translate_names(model: nn.Module, reference: nn.Module) -> Optional[dict[str, str]]:
    """Extractor parameter name -> the reference model's name of the same parameter, or None
    unless every parameter is found with the same shape and together they are a leading part
    of the reference (an extractor drops the last stages and the head, never a middle block:
    a model built with other depths does not match)."""
    from timm.models._features import _module_list

    reference_order = [n for n, _ in reference.named_parameters()]
    position = {n: k for k, n in enumerate(reference_order)}
    shapes = {n: p.shape for n, p in reference.named_parameters()}
    flattened = {new: old for new, old, _ in _module_list(reference, flatten_sequential=True)}
    translated = {}
    for name, param in model.named_parameters():
        for candidate in _candidate_names(name, flattened):
            if shapes.get(candidate) == param.shape:
                translated[name] = candidate
                break
        else:
            logger.debug("feature extractor parameter %r not found in the rebuilt model", name)
            return None
    found = set(translated.values())
    last = max((position[n] for n in found), default=-1)
    skipped = [n for n in reference_order[: last + 1] if n not in found and "." in n]
    if skipped:
        logger.debug("the rebuilt model has parameters the feature extractor lacks: %s", skipped[:5])
        return None
    return translated


def _candidate_names(name: str, flattened: dict[str, str]) -> Iterator[str]:
    """Where a feature extractor's parameter may sit in the full model: the same name, without
    the extractor's own level (``model.``, ``body.``), or with a flattened first level restored
    (``stages_1.blocks`` -> ``stages.1.blocks``)."""
    yield name
    first, _, rest = name.partition(".")
    if first in INNER_MODEL_ATTRIBUTES and rest:
        yield rest
    if first in flattened and rest:
        yield f"{flattened[first]}.{rest}"
