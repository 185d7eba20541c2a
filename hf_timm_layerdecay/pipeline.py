"""The stages of one grouping, each public: every entry point is a composition of them.

    model_index -> find_layer_map -> scale_function (+ lr_multiplier) -> build_param_groups
    -> merge_equal_groups -> split_by_device_mesh -> check_param_groups

with :func:`no_decay_names` beside the layer map. :func:`~hf_timm_layerdecay.auto_layer_decay`
runs them all; the post's :func:`~hf_timm_layerdecay.get_parameter_groups` runs them with its own
rule and scales; the command line takes the layer map's notes from the same run.
"""

from __future__ import annotations

import logging
import warnings
from typing import Any, Callable, Iterable, Mapping, Optional

from torch import nn

from .adapters import family_no_weight_decay, infer_layer_map
from .adapters.index import ModelIndex, index_model
from .adapters.wrappers import canonical_name
from .config import AutoStrategy, LayerDecayConfig, Strategy, check_strategy
from .core.layer_map import LayerIdError, LayerMap, decay_effect_problems
from .core.multipliers import Multipliers
from .core.regions import RegionError, region_scale_function, resolve_regions, unnamed_below_head
from .core.scales import LayerDecayWarning, layer_scales
from .core.strategies import layer_map_from_patterns, layer_map_from_rule
from .core.weight_decay import NameMatcher, is_no_decay_shape, no_weight_decay_list

logger = logging.getLogger(__name__)

__all__ = [
    "find_layer_map", "leave_out_small_scales", "loraplus_multiplier", "lr_multiplier", "model_index",
    "no_decay_names", "scale_function", "warn_decay_effect",
]


def model_index(model: nn.Module) -> ModelIndex:
    """Everything the stages ask of ``model``, from one walk: its parameters in
    ``named_parameters()`` order with their aliases, its modules, the model inside its wrappers,
    canonical names and shapes (:class:`~hf_timm_layerdecay.adapters.index.ModelIndex`)."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    return index_model(model)

def find_layer_map(index: ModelIndex, strategy: Strategy) -> LayerMap:
    """The :class:`LayerMap` of the indexed model, keyed by its reported names: the family
    adapter's (or the structure's) for an :class:`AutoStrategy`, else the rule's or the
    patterns', which see canonical names (without wrapper prefixes)."""
    canonical_names = list(index.canonical_of.values())
    strategy = check_strategy(strategy)
    if isinstance(strategy, AutoStrategy):
        layer_map = infer_layer_map(index.of(index.inner), strategy, index.adapter)
        if index.renamed:
            layer_map = LayerMap({canonical_name(n): i for n, i in layer_map.ids.items()}, layer_map.num_layers,
                                 layer_map.notes, {canonical_name(p): s for p, s in layer_map.regions.items()})
    elif callable(strategy):
        layer_map = layer_map_from_rule(canonical_names, strategy)
    else:
        layer_map = layer_map_from_patterns(canonical_names, strategy)
    missing = set(canonical_names) - layer_map.ids.keys()
    if missing:
        missing_in_order = [c for c in canonical_names if c in missing]
        raise LayerIdError(f"no layer id for {len(missing)} parameter(s): {', '.join(missing_in_order[:10])}")
    if not index.renamed and list(layer_map.ids) == canonical_names:
        return layer_map  # already keyed by the reported names, in named_parameters() order
    ids = {outer: layer_map.ids[canonical] for outer, canonical in index.canonical_of.items()}
    return LayerMap(ids, layer_map.num_layers, layer_map.notes, layer_map.regions)


def scale_function(
    layer_map: LayerMap, config: LayerDecayConfig, model_name: str, grouped: list[str], canonical_of: Mapping[str, str]
) -> tuple[Callable, Optional[Callable[[str], Optional[str]]]]:
    """``(scale_of, region_of)`` for :func:`build_param_groups`: one frame's scales by layer id,
    or, for a ``{region: decay}`` layer decay, scales by layer id and region, with the region of
    every name (see :mod:`hf_timm_layerdecay.core.regions`)."""
    def scales(num_layers: int, decay: Any) -> list[float]:
        return layer_scales(num_layers, decay, min_scale=config.min_scale, normalize_depth=config.normalize_depth,
                            allow_decay_above_one=config.allow_decay_above_one)

    if not isinstance(config.layer_decay, Mapping):
        return scales(layer_map.num_layers, config.layer_decay).__getitem__, None
    regions = resolve_regions(config.layer_decay, layer_map, model_name)
    unnamed = unnamed_below_head(regions, layer_map, grouped, canonical_of)
    if unnamed:
        shown = ", ".join(f"{name!r} (id {layer_map.ids[name]})" for name in unnamed[:3])
        raise RegionError(
            f"layer_decay={config.layer_decay!r} says no decay for {len(unnamed)} parameter(s) below the head outside "
            f"the named regions: {shown}{', ...' if len(unnamed) > 3 else ''}. Add a decay for them with the key "
            f"'*' (over the whole model, as a float layer_decay), or name their region; regions: {list(layer_map.regions)}"
        )
    return region_scale_function(regions, layer_map.num_layers, scales), lambda name: regions.region_of(canonical_of[name])



def leave_out_small_scales(
    groups: list[dict], named: list, config: LayerDecayConfig, *, stacklevel: int = 2
) -> tuple[list[dict], list]:
    """The groups without the layers whose scale is below ``no_opt_scale`` (frozen when
    ``freeze_no_opt``), warned about; and ``named`` without their parameters, for the coverage check."""
    kept = [g for g in groups if g["scale"] / g.get("lr_mult", 1.0) >= config.no_opt_scale]
    left = [g for g in groups if g["scale"] / g.get("lr_mult", 1.0) < config.no_opt_scale]
    if not left:
        return groups, named
    if not kept:
        raise ValueError(f"no_opt_scale={config.no_opt_scale:g} leaves every layer out of the optimizer (the largest "
                         f"scale is {max(g['scale'] / g.get('lr_mult', 1.0) for g in groups):.3g})")
    out = {id(p) for g in left for p in g["params"]}
    if config.freeze_no_opt:
        for g in left:
            for param in g["params"]:
                param.requires_grad_(False)
    layers = sorted({g["layer_id"] for g in left})
    count = sum(len(g["params"]) for g in left)
    warnings.warn(
        f"no_opt_scale={config.no_opt_scale:g}: layers {layers} ({count} tensors, scale below it) are left out of the "
        "optimizer" + (" and frozen" if config.freeze_no_opt else
                       "; they still compute gradients (freeze_no_opt=True freezes them)"),
        UserWarning, stacklevel=stacklevel,
    )
    return kept, [(n, p) for n, p in named if id(p) not in out]



def lr_multiplier(
    lr_mult: Multipliers,
    head_lr_mult: float,
    layer_map: Optional[LayerMap],
    canonical_of: Mapping[str, str],
    loraplus: Optional[Callable[[str], float]],
) -> Optional[Callable[[str], float]]:
    """``name -> lr multiplier``: the matching ``lr_mult`` entry's, times ``head_lr_mult`` at the
    head's layer id, times LoRA+'s; ``None`` when none is set."""
    if not lr_mult and head_lr_mult == 1.0 and loraplus is None:
        return None
    head_id = layer_map.head_id if layer_map is not None else None
    ids = layer_map.ids if layer_map is not None else {}

    def multiplier(name: str) -> float:
        value = lr_mult.of(name, canonical_of[name]) if lr_mult else 1.0
        if ids.get(name) == head_id:
            value *= head_lr_mult
        return value * loraplus(name) if loraplus is not None else value

    return multiplier



def loraplus_multiplier(
    index: ModelIndex, config: LayerDecayConfig, lr: Optional[float], *, stacklevel: int = 2
) -> Optional[Callable[[str], float]]:
    """LoRA+'s ``name -> multiplier``, by the rule of ``peft.optimizers.create_loraplus_optimizer``:
    the parameters of a LoRA embedding layer (the module two levels up has ``lora_embedding_A``)
    get ``loraplus_lr_embedding / lr``; ``lora_B`` weights and 1-D parameters the ratio."""
    ratio = config.loraplus_lr_ratio
    if ratio is None:
        return None
    found = index.found
    if not any("lora_B" in name for name, param in found.named if param.requires_grad):
        warnings.warn(f"loraplus_lr_ratio={ratio:g}, but no trainable parameter is a lora_B weight: is the model "
                      "wrapped by PEFT with LoRA?", UserWarning, stacklevel=stacklevel)

    def in_embedding(name: str) -> bool:
        owner = name.rsplit(".", 2)[0] if name.count(".") >= 2 else None  # the tuner layer above its ParameterDict
        return hasattr(found.modules.get(owner), "lora_embedding_A")

    embedding = [name for name, _ in found.named if in_embedding(name)]
    if embedding and lr is None:
        raise ValueError(
            f"loraplus_lr_embedding={config.loraplus_lr_embedding:g} is an lr (PEFT's convention) for {embedding[0]!r} "
            "and the other LoRA embedding weights: give lr= too"
        )
    embedding_mult = config.loraplus_lr_embedding / lr if embedding else 1.0
    embedding = set(embedding)

    def multiplier(name: str) -> float:
        if name in embedding:
            return embedding_mult
        return ratio if "lora_B" in name or len(index.shape_of[name]) == 1 else 1.0

    return multiplier



def warn_decay_effect(layer_map: LayerMap, trainable: list[str], strategy: object, *, stacklevel: int) -> None:
    """Warn (:class:`LayerDecayWarning`) where the map makes the decay do nothing, or, for a user's
    rule, skip ids (see :func:`~hf_timm_layerdecay.core.layer_map.decay_effect_problems`)."""
    from_rule = not isinstance(strategy, (str, AutoStrategy))
    for problem in decay_effect_problems(layer_map, trainable, from_rule=from_rule):
        notes = f" ({'; '.join(layer_map.notes)})" if layer_map.notes else ""
        warnings.warn(problem + notes, LayerDecayWarning, stacklevel=stacklevel + 1)



def no_decay_names(
    index: ModelIndex, extra: Iterable[str] = (), *, use_model_list: bool = True, expected_unused: Iterable[str] = (),
    stacklevel: int = 2,
) -> set[str]:
    """Names of the parameters that get no weight decay: biases, tensors with at most one
    dimension, ``extra`` (matched on reported and canonical names) and, if asked, the names
    the model lists in ``no_weight_decay()`` and those its family adapter knows (timm's
    position tables and tokens)."""
    user = NameMatcher(extra)
    listed = NameMatcher(no_weight_decay_list(index.inner) if use_model_list else ())
    family = {canonical_name(n) for n in family_no_weight_decay(index.of(index.inner), index.adapter)} if use_model_list else set()
    reported = [name for name, _ in index.named]
    canonical_of = index.canonical_of
    canonicals = [canonical_of[name] for name in reported] if index.renamed else reported
    # Whole-list passes rather than a loop of questions per parameter: this runs on every call.
    # Every matcher sees every name, so that each records which of its entries matched.
    by_canonical = user.matching(canonicals) | listed.matching(canonicals) | family
    names = user.matching(reported) if index.renamed else set()
    names.update(name for name in reported if is_no_decay_shape(name, index.shape_of[name]))
    names.update(name for name, canonical in zip(reported, canonicals) if canonical in by_canonical)
    expected = set(expected_unused)
    unexpected = [entry for entry in user.unused if entry not in expected]
    if unexpected:
        warnings.warn(f"no_weight_decay entries match no parameter: {unexpected}", UserWarning, stacklevel=stacklevel)
    if len(unexpected) < len(user.unused):
        logger.debug("no-weight-decay entries without a parameter: %s", user.unused)
    if listed.unused:
        logger.debug("%s.no_weight_decay() names without a parameter: %s", type(index.inner).__name__, listed.unused)
    return names
