"""The entry points: model -> layer ids -> scales -> optimizer parameter groups (the stages are
:mod:`hf_timm_layerdecay.pipeline`)."""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass
from typing import Any, Optional

from torch import nn

from .adapters.walk import collector_paused
from .config import NAMED_STRATEGIES, LayerDecayConfig, Strategy, check_strategy
from .core.checks import check_number
from .core.groups import build_param_groups, check_param_groups, merge_equal_groups, split_by_device_mesh
from .core.layer_map import LayerMap
from .core.multipliers import Multipliers
from .core.scales import as_number, is_decay_off
from .pipeline import (
    find_layer_map,
    leave_out_small_scales,
    loraplus_multiplier,
    lr_multiplier,
    model_index,
    no_decay_names,
    scale_function,
    warn_decay_effect,
)

logger = logging.getLogger(__name__)

__all__ = [
    "NAMED_STRATEGIES", "LayerDecayPlan", "Strategy", "auto_layer_decay", "check_strategy", "layer_decay_plan", "layer_ids",
    "resolve_layer_map",
]


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
    with collector_paused():
        index = model_index(model)
        ids = find_layer_map(index, strategy).ids
        return {name: ids[name] for name, param in index.named if param.requires_grad}


def resolve_layer_map(model: nn.Module, strategy: Strategy = "auto") -> LayerMap:
    """The full :class:`LayerMap` (frozen parameters and notes included) for ``model``."""
    with collector_paused():
        return find_layer_map(model_index(model), strategy)


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
    with collector_paused():
        return _plan(model, config, lr, options).groups


@dataclass(frozen=True)
class LayerDecayPlan:
    """What one grouping computed: the groups :func:`auto_layer_decay` returns, and the layer map
    they were built from (``None`` when no layer split was needed), notes included."""

    groups: list[dict]
    layer_map: Optional[LayerMap]


def layer_decay_plan(
    model: nn.Module, config: Optional[LayerDecayConfig] = None, *, lr: Optional[float] = None, **options: Any
) -> LayerDecayPlan:
    """:func:`auto_layer_decay`'s groups together with the layer map behind them, from one run
    (the command line shows both).

    Example:
        >>> import torch
        >>> plan = layer_decay_plan(torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Linear(2, 2)), lr=1.0)
        >>> len(plan.groups), plan.layer_map.num_layers
        (4, 2)
    """
    with collector_paused():
        return _plan(model, config, lr, options)


#: Frames between a warning raised in :func:`_plan` and the user's call: ``_plan``, the entry point.
_CALLER = 3


def _plan(model: nn.Module, config: Optional[LayerDecayConfig], lr: Optional[float], options: dict) -> LayerDecayPlan:
    """The stages of :mod:`hf_timm_layerdecay.pipeline`, in order."""
    index = model_index(model)
    check_number("lr", lr, allow_none=True, positive=True)
    config = LayerDecayConfig.from_options(config, **options)
    lr = as_number(lr)
    named = index.named
    include_frozen = config.frozen == "include"
    if not include_frozen and not any(p.requires_grad for _, p in named):
        raise ValueError("the model has no trainable parameters (all have requires_grad=False)")
    no_decay = no_decay_names(index, config.no_weight_decay, use_model_list=config.model_no_weight_decay,
                              stacklevel=_CALLER + 1)
    decay_on = not is_decay_off(config.layer_decay)
    layer_map = find_layer_map(index, config.auto_strategy()) if decay_on or config.head_lr_mult != 1.0 else None
    lr_mult = Multipliers(config.lr_mult)
    wd_mult = Multipliers(config.wd_mult)
    canonical_of = index.canonical_of
    common = dict(
        weight_decay=config.weight_decay,
        is_no_decay=lambda name, _: name in no_decay,
        lr=lr,
        lr_mult_of=lr_multiplier(lr_mult, config.head_lr_mult, layer_map, canonical_of,
                                 loraplus_multiplier(index, config, lr, stacklevel=_CALLER + 1)),
        wd_mult_of=(lambda name: wd_mult.of(name, canonical_of[name])) if wd_mult else None,
        include_frozen=include_frozen,
    )
    if not decay_on:
        groups = build_param_groups(named, **common)
    else:
        grouped = [name for name, param in named if param.requires_grad or include_frozen]
        scale_of, region_of = scale_function(layer_map, config, type(index.inner).__name__, grouped, canonical_of)
        groups = build_param_groups(named, layer_of=layer_map.ids.__getitem__, scale_of=scale_of, region_of=region_of,
                                    **common)
        warn_decay_effect(layer_map, grouped, config.strategy, stacklevel=_CALLER)
        if lr is None:
            warnings.warn(
                "auto_layer_decay() without lr: the groups carry only 'lr_scale', which timm's schedulers "
                "apply but torch.optim, torch.optim.lr_scheduler and transformers ignore. Pass lr=... to get "
                "groups with their real per-group 'lr', which every scheduler keeps.",
                UserWarning,
                stacklevel=_CALLER,
            )
    for option, multipliers, which in (("lr_mult", lr_mult, "parameter"), ("wd_mult", wd_mult, "weight-decayed parameter")):
        if multipliers.unused:
            scope = "" if include_frozen else " trainable"
            warnings.warn(f"{option} entries match no{scope} {which}: {multipliers.unused}", UserWarning,
                          stacklevel=_CALLER)
    if config.no_opt_scale is not None:
        groups, named = leave_out_small_scales(groups, named, config, stacklevel=_CALLER + 1)
    groups = split_by_device_mesh(merge_equal_groups(groups))
    check_param_groups(groups, model, named=named)
    return LayerDecayPlan(groups, layer_map)
