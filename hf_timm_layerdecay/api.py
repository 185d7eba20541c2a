"""The one call: model -> layer ids -> scales -> optimizer parameter groups."""

from __future__ import annotations

import logging
import warnings
from typing import Any, Callable, Iterable, Mapping, Optional

from torch import nn

from .adapters import family_no_weight_decay, infer_layer_map
from .adapters.walk import walk, walks_once
from .adapters.wrappers import ModelView, canonical_name, view
from .config import NAMED_STRATEGIES, AutoStrategy, LayerDecayConfig, Strategy, check_strategy
from .core.checks import check_number
from .core.groups import build_param_groups, check_param_groups, merge_equal_groups, split_by_device_mesh
from .core.layer_map import LayerIdError, LayerMap, decay_effect_problems
from .core.multipliers import Multipliers
from .core.regions import RegionError, region_scale_function, resolve_regions, unnamed_below_head
from .core.scales import LayerDecayWarning, as_number, is_decay_off, layer_scales
from .core.strategies import layer_map_from_patterns, layer_map_from_rule
from .core.weight_decay import NameMatcher, is_no_decay_shape, no_weight_decay_list

logger = logging.getLogger(__name__)

__all__ = ["NAMED_STRATEGIES", "Strategy", "auto_layer_decay", "check_strategy", "layer_ids", "resolve_layer_map"]


@walks_once
def layer_ids(model: nn.Module, strategy: Strategy = "auto") -> dict[str, int]:
    """Layer id of every trainable parameter, keyed as ``model.named_parameters()`` names it.

    0 is the stem (embeddings, patch embedding, tokens), the largest id the head; blocks are
    numbered in between in the order they run. Wrapped models (DDP, ``torch.compile``, FSDP1)
    give the same ids as the bare model, under their own names.

    Args:
        model: any ``nn.Module``.
        strategy: ``"auto"``; ``"structural"``; an :class:`AutoStrategy` with options
            (``AutoStrategy(granularity="stage")``); a callable rule ``canonical name -> id``
            (names without wrapper prefixes, like the BEiT rule
            :func:`~hf_timm_layerdecay.get_num_layer_for_vit`); or a mapping
            ``{regex: id}`` (see :mod:`hf_timm_layerdecay.core.strategies`).

    Example:
        >>> import torch
        >>> model = torch.nn.Sequential(torch.nn.Linear(2, 3), torch.nn.ReLU(), torch.nn.Linear(3, 1))
        >>> layer_ids(model)
        {'0.weight': 0, '0.bias': 0, '2.weight': 1, '2.bias': 1}
        >>> layer_ids(model, {r"0\\.": 0, r".*": "last"})
        {'0.weight': 0, '0.bias': 0, '2.weight': 1, '2.bias': 1}
    """
    ids = resolve_layer_map(model, strategy).ids
    return {name: ids[name] for name, param in walk(model).named if param.requires_grad}


@walks_once
def resolve_layer_map(model: nn.Module, strategy: Strategy = "auto") -> LayerMap:
    """The full :class:`LayerMap` (frozen parameters and notes included) for ``model``."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    return _layer_map(view(model), strategy)


def _layer_map(seen: ModelView, strategy: Strategy) -> LayerMap:
    canonical_names = list(seen.canonical_of.values())
    strategy = check_strategy(strategy)
    if isinstance(strategy, AutoStrategy):
        layer_map = infer_layer_map(seen.inner, strategy)
        if seen.renamed:
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
    if not seen.renamed and list(layer_map.ids) == canonical_names:
        return layer_map  # already keyed by the reported names, in named_parameters() order
    ids = {outer: layer_map.ids[canonical] for outer, canonical in seen.canonical_of.items()}
    return LayerMap(ids, layer_map.num_layers, layer_map.notes, layer_map.regions)


@walks_once
def auto_layer_decay(
    model: nn.Module,
    config: Optional[LayerDecayConfig] = None,
    *,
    lr: Optional[float] = None,
    **options: Any,
) -> list[dict]:
    """Optimizer parameter groups with layer-wise learning-rate decay.

    Every trainable parameter lands in exactly one group (this is checked); groups are sorted
    by layer id, the decayed group of a layer before its no-decay group. Groups whose
    hyperparameters come out identical (layers clamped to one ``min_scale``, a weight decay of
    0) are merged, since every group costs the optimizer its own kernel launches per step.
    A group whose tensors sit on several device meshes (DTensors of tensor and expert parallelism)
    is split into one group per mesh, which ``foreach`` and ``fused`` optimizers need.

    Args:
        model: any ``nn.Module``, bare or wrapped (DDP, ``torch.compile``, FSDP1).
        config: a :class:`~hf_timm_layerdecay.LayerDecayConfig`; ``options`` change it.
        lr: base learning rate (the head's). When given, every group carries its real
            ``lr = lr * scale`` and works with any scheduler; when omitted, groups carry
            ``lr_scale`` instead, which only timm's schedulers and BEiT/MAE-style loops apply.
        **options: the fields of :class:`~hf_timm_layerdecay.LayerDecayConfig`, described
            there: ``layer_decay`` (default 0.75), ``weight_decay`` (0.05), ``strategy``
            (``"auto"``; see :func:`layer_ids`), ``granularity``, ``encoder_decoder``, ``tower``,
            ``tied_head``, ``min_scale``, ``normalize_depth``, ``no_weight_decay``,
            ``model_no_weight_decay``, ``allow_decay_above_one``, ``lr_mult``, ``wd_mult``,
            ``head_lr_mult``, ``frozen``.

    Returns:
        A list of dicts ready for ``torch.optim``, each with ``params``, ``param_names``,
        ``name``, ``layer_id``, ``weight_decay``, ``scale`` and either ``lr`` or ``lr_scale``
        (see :mod:`hf_timm_layerdecay.core.groups`).

    Example:
        >>> import torch
        >>> model = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.ReLU(), torch.nn.Linear(4, 2))
        >>> groups = auto_layer_decay(model, lr=1e-3, layer_decay=0.5)
        >>> [(g["name"], g["lr"], g["weight_decay"]) for g in groups]
        [('layer_0_decay', 0.0005, 0.05), ('layer_0_no_decay', 0.0005, 0.0), ('layer_1_decay', 0.001, 0.05), ('layer_1_no_decay', 0.001, 0.0)]
        >>> optimizer = torch.optim.AdamW(groups, lr=1e-3)
        >>> [(g["name"], g["lr"]) for g in auto_layer_decay(model, lr=1e-3, layer_decay=0.5, head_lr_mult=10)][2:]
        [('layer_1_decay_lr_x10', 0.01), ('layer_1_no_decay_lr_x10', 0.01)]
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    check_number("lr", lr, allow_none=True, positive=True)
    config = LayerDecayConfig.from_options(config, **options)
    lr = as_number(lr)
    named = walk(model).named
    include_frozen = config.frozen == "include"
    if not include_frozen and not any(p.requires_grad for _, p in named):
        raise ValueError("the model has no trainable parameters (all have requires_grad=False)")
    seen = view(model)
    no_decay = _no_decay_names(seen, named, config.no_weight_decay, config.model_no_weight_decay)
    decay_on = not is_decay_off(config.layer_decay)
    layer_map = _layer_map(seen, config.auto_strategy()) if decay_on or config.head_lr_mult != 1.0 else None
    lr_mult = Multipliers(config.lr_mult)
    wd_mult = Multipliers(config.wd_mult)
    canonical_of = seen.canonical_of
    common = dict(
        weight_decay=config.weight_decay,
        is_no_decay=lambda name, _: name in no_decay,
        lr=lr,
        lr_mult_of=_lr_multiplier(lr_mult, config.head_lr_mult, layer_map, canonical_of,
                                  _loraplus_multiplier(model, seen, config, lr)),
        wd_mult_of=(lambda name: wd_mult.of(name, canonical_of[name])) if wd_mult else None,
        include_frozen=include_frozen,
    )
    if not decay_on:
        groups = build_param_groups(named, **common)
    else:
        grouped = [name for name, param in named if param.requires_grad or include_frozen]
        scale_of, region_of = _scale_function(layer_map, config, type(seen.inner).__name__, grouped, canonical_of)
        groups = build_param_groups(named, layer_of=layer_map.ids.__getitem__, scale_of=scale_of, region_of=region_of,
                                    **common)
        warn_decay_effect(layer_map, grouped, config.strategy, stacklevel=3)
        if lr is None:
            warnings.warn(
                "auto_layer_decay() without lr: the groups carry only 'lr_scale', which timm's schedulers "
                "apply but torch.optim, torch.optim.lr_scheduler and transformers ignore. Pass lr=... to get "
                "groups with their real per-group 'lr', which every scheduler keeps.",
                UserWarning,
                stacklevel=3,
            )
    for option, multipliers, which in (("lr_mult", lr_mult, "parameter"), ("wd_mult", wd_mult, "weight-decayed parameter")):
        if multipliers.unused:
            scope = "" if include_frozen else " trainable"
            warnings.warn(f"{option} entries match no{scope} {which}: {multipliers.unused}", UserWarning, stacklevel=3)
    if config.no_opt_scale is not None:
        groups, named = _leave_out_small_scales(groups, named, config)
    groups = split_by_device_mesh(merge_equal_groups(groups))
    check_param_groups(groups, model, named=named)
    return groups


def _scale_function(
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


def _leave_out_small_scales(groups: list[dict], named: list, config: LayerDecayConfig) -> tuple[list[dict], list]:
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
        UserWarning, stacklevel=4,
    )
    return kept, [(n, p) for n, p in named if id(p) not in out]


def _lr_multiplier(
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
    head_id = layer_map.num_layers - 1 if layer_map is not None else None
    ids = layer_map.ids if layer_map is not None else {}

    def multiplier(name: str) -> float:
        value = lr_mult.of(name, canonical_of[name]) if lr_mult else 1.0
        if ids.get(name) == head_id:
            value *= head_lr_mult
        return value * loraplus(name) if loraplus is not None else value

    return multiplier


def _loraplus_multiplier(
    model: nn.Module, seen: ModelView, config: LayerDecayConfig, lr: Optional[float]
) -> Optional[Callable[[str], float]]:
    """LoRA+'s ``name -> multiplier``, by the rule of ``peft.optimizers.create_loraplus_optimizer``:
    the parameters of a LoRA embedding layer (the module two levels up has ``lora_embedding_A``)
    get ``loraplus_lr_embedding / lr``; ``lora_B`` weights and 1-D parameters the ratio."""
    ratio = config.loraplus_lr_ratio
    if ratio is None:
        return None
    found = walk(model)
    if not any("lora_B" in name for name, param in found.named if param.requires_grad):
        warnings.warn(f"loraplus_lr_ratio={ratio:g}, but no trainable parameter is a lora_B weight: is the model "
                      "wrapped by PEFT with LoRA?", UserWarning, stacklevel=4)

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
        return ratio if "lora_B" in name or len(seen.shape_of[name]) == 1 else 1.0

    return multiplier


def warn_decay_effect(layer_map: LayerMap, trainable: list[str], strategy: object, *, stacklevel: int) -> None:
    """Warn (:class:`LayerDecayWarning`) where the map makes the decay do nothing, or, for a user's
    rule, skip ids (see :func:`~hf_timm_layerdecay.core.layer_map.decay_effect_problems`)."""
    from_rule = not isinstance(strategy, (str, AutoStrategy))
    for problem in decay_effect_problems(layer_map, trainable, from_rule=from_rule):
        notes = f" ({'; '.join(layer_map.notes)})" if layer_map.notes else ""
        warnings.warn(problem + notes, LayerDecayWarning, stacklevel=stacklevel + 1)


def _no_decay_names(
    seen: ModelView, named: list, extra: Iterable[str], use_model_list: bool, expected_unused: Iterable[str] = ()
) -> set[str]:
    """Names of the parameters that get no weight decay: biases, tensors with at most one
    dimension, ``extra`` (matched on reported and canonical names) and, if asked, the names
    the model lists in ``no_weight_decay()`` and those its family adapter knows (timm's
    position tables and tokens)."""
    user = NameMatcher(extra)
    listed = NameMatcher(no_weight_decay_list(seen.inner) if use_model_list else ())
    family = {canonical_name(n) for n in family_no_weight_decay(seen.inner)} if use_model_list else set()
    reported = [name for name, _ in named]
    canonical_of = seen.canonical_of
    canonicals = [canonical_of[name] for name in reported] if seen.renamed else reported
    # Whole-list passes rather than a loop of questions per parameter: this runs on every call.
    # Every matcher sees every name, so that each records which of its entries matched.
    by_canonical = user.matching(canonicals) | listed.matching(canonicals) | family
    names = user.matching(reported) if seen.renamed else set()
    names.update(name for name in reported if is_no_decay_shape(name, seen.shape_of[name]))
    names.update(name for name, canonical in zip(reported, canonicals) if canonical in by_canonical)
    expected = set(expected_unused)
    unexpected = [entry for entry in user.unused if entry not in expected]
    if unexpected:
        warnings.warn(f"no_weight_decay entries match no parameter: {unexpected}", UserWarning, stacklevel=4)
    if len(unexpected) < len(user.unused):
        logger.debug("no-weight-decay entries without a parameter: %s", user.unused)
    if listed.unused:
        logger.debug("%s.no_weight_decay() names without a parameter: %s", type(seen.inner).__name__, listed.unused)
    return names
