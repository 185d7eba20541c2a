"""``create_optimizer``: layer-decayed parameter groups handed to a real optimizer."""

from __future__ import annotations

import difflib
import inspect
import logging
from typing import Any, Callable, Optional, Union

import torch
from torch import nn

from ..api import auto_layer_decay, resolve_layer_map
from ..config import LayerDecayConfig, split_options
from ..core.checks import check_number
from ..core.groups import NO_DECAY, group_kind
from .resume import inner_optimizer, guard_resume

logger = logging.getLogger(__name__)

OptimizerSpec = Union[str, Callable[..., torch.optim.Optimizer]]
#: torch optimizers that cannot take several parameter groups.
_SINGLE_GROUP_ONLY = {"lbfgs": "LBFGS supports a single parameter group, so it cannot apply per-layer learning rates"}
_LOOKAHEAD = "lookahead_"
#: timm's Muon family: hidden matrices to Muon, groups marked use_fallback to AdamW.
_MUON = frozenset({"muon", "nmuon", "adamuon", "nadamuon"})


def create_optimizer(
    model: nn.Module,
    opt: OptimizerSpec = "adamw",
    *,
    lr: float,
    config: Optional[LayerDecayConfig] = None,
    **kwargs: Any,
) -> torch.optim.Optimizer:
    """Build an optimizer whose parameter groups carry layer-wise decayed learning rates.

    Args:
        model: the model to optimize.
        opt: an optimizer name or an optimizer class (or any callable ``(params, **kwargs)``).
            Names are case-insensitive: first every ``torch.optim`` optimizer (``"adamw"``,
            ``"sgd"``, ...), then timm's registry (``"lamb"``, ``"lion"``, ``"adan"``,
            ``"nadamw"``, ``"lookahead_adamw"``, ...), built by timm's own factory so its
            defaults apply (timm's ``"momentum"`` and ``"nesterov"`` for SGD flavours).
            ``"muon"`` (and timm's ``"nmuon"``, ``"adamuon"``, ``"nadamuon"``) is timm's Muon in
            one optimizer: the hidden matrices of the blocks to Muon, the embeddings, the head
            and the no-decay groups to its AdamW fallback (:func:`route_to_fallback`), both at
            their layer's lr. Muon's lr then means AdamW's: timm's default
            ``adjust_lr_fn="match_rms_adamw"`` scales each orthogonalised update to the RMS of
            an AdamW update (``0.2 * sqrt(max(rows, cols))``); with ``"original"`` Muon's lr is
            on its own scale (0.02 is typical). ``torch.optim.Muon`` (2-D parameters only) is refused.
            ``"sgd"`` needs ``momentum=``: torch's SGD has none by default and timm's
            ``"sgd"`` 0.9 with Nesterov, and a run that silently got the other would train
            differently (``momentum=0.9, nesterov=True`` is timm's).
        lr: base learning rate, the head's; group ``i`` gets ``lr * scale_i``. It is also the
            optimizer's default lr, which schedulers such as transformers'
            ``cosine_with_min_lr`` read.
        config: a :class:`~hf_timm_layerdecay.LayerDecayConfig`.
        **kwargs: the fields of :class:`~hf_timm_layerdecay.LayerDecayConfig`
            (``layer_decay``: default 0.75, ``weight_decay``: 0.05, ``strategy``,
            ``min_scale``, ``lr_mult``, ``frozen``, ...) go to the groups, and ``weight_decay``
            to the optimizer too; everything else goes to the optimizer (``betas``,
            ``momentum``, ``fused``, ...).

    The optimizer refuses to ``load_state_dict`` a checkpoint whose groups differ from its own
    (another ``layer_decay``, strategy or model), instead of silently restoring other lrs, and
    takes groups added later without ``param_names`` (Lightning's ``BaseFinetuning`` adds
    some), naming their parameters as the model does. A model on the meta device is refused:
    materialising it (``to_empty``, loading weights) replaces its parameters, and an optimizer
    built before would hold the old ones and train nothing (``auto_layer_decay`` works on such
    a model, to inspect it).

    Example:
        >>> import torch
        >>> model = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.ReLU(), torch.nn.Linear(4, 2))
        >>> optimizer = create_optimizer(model, "sgd", lr=0.1, layer_decay=0.5, momentum=0.9)
        >>> [(g["name"], g["lr"]) for g in optimizer.param_groups]
        [('layer_0_decay', 0.05), ('layer_0_no_decay', 0.05), ('layer_1_decay', 0.1), ('layer_1_no_decay', 0.1)]
    """
    check_number("lr", lr, positive=True)  # the optimizer's default lr too: None is no choice here
    build = resolve_optimizer(opt)
    if isinstance(opt, str) and opt.lower() == "sgd" and "momentum" not in kwargs:
        raise ValueError(
            'create_optimizer(model, "sgd") without momentum: torch\'s SGD has momentum 0 by default, timm\'s '
            '"sgd" momentum 0.9 with Nesterov. Say which: momentum=0.9, nesterov=True (timm\'s), or momentum=0 '
            "(torch's)"
        )
    options, kwargs = split_options(kwargs)
    config = LayerDecayConfig.from_options(config, **options)
    groups = auto_layer_decay(model, config, lr=lr)
    if _is_muon(opt):
        groups = route_to_fallback(groups, model, config)
    _refuse_meta_tensors(groups)
    optimizer = build(groups, lr=lr, weight_decay=config.weight_decay, **kwargs)
    accept_unnamed_groups(optimizer, model)
    guard_resume(optimizer)
    logger.info("created %s with %d parameter groups", type(optimizer).__name__, len(optimizer.param_groups))
    return optimizer


def accept_unnamed_groups(optimizer: torch.optim.Optimizer, model: nn.Module) -> torch.optim.Optimizer:
    """Let ``optimizer.add_param_group`` take a group without ``param_names``.

    Our groups carry ``param_names`` (torch keeps them in ``state_dict()``), and torch then
    refuses a group added without them ("all optimizer param groups should be with/without
    names"), which is how Lightning's ``BaseFinetuning.unfreeze_and_add_param_group`` and most
    hand-written unfreezing add the parameters they unfreeze. Such a group gets the names the
    model gives its parameters (``"?<n>"`` for a tensor that is not the model's), so the state
    dict stays named. Returns the optimizer.
    """
    base = inner_optimizer(optimizer)
    if base is None or not any("param_names" in g for g in base.param_groups):
        return optimizer
    names_of = {id(p): name for name, p in model.named_parameters()}
    add_param_group = base.add_param_group

    def add_named_param_group(param_group: dict) -> None:
        if isinstance(param_group, dict) and "param_names" not in param_group:
            params = param_group["params"]
            params = [params] if isinstance(params, torch.Tensor) else list(params)
            names = [names_of.get(id(p), f"?{i}") for i, p in enumerate(params)]
            param_group = {**param_group, "params": params, "param_names": names}
        add_param_group(param_group)

    base.add_param_group = add_named_param_group
    return optimizer


def _is_muon(opt: OptimizerSpec) -> bool:
    return isinstance(opt, str) and opt.lower().removeprefix(_LOOKAHEAD) in _MUON


def route_to_fallback(groups: list[dict], model: nn.Module, config: LayerDecayConfig) -> list[dict]:
    """Mark the groups timm's Muon must give to its AdamW fallback: ``use_fallback=True``.

    Muon orthogonalises the update of a hidden weight matrix; it is meant for the matrices of the
    blocks, not for embeddings, the head, or what this library keeps out of weight decay (norms,
    biases, position tables, tokens). Those go to the fallback: the groups at the stem's and the
    head's layer ids, and every no-decay group. A group that holds both kinds (layers merged by
    ``min_scale``, or no layer decay at all) is split in two, ``<name>@muon`` and
    ``<name>@fallback``. Muon's own groups keep timm's shape check (a 1-D tensor still falls back).
    """
    layer_map = resolve_layer_map(model, config.auto_strategy())
    ends = {0, layer_map.head_id}
    routed = []
    for group in groups:
        if group_kind(group) == NO_DECAY:
            routed.append({**group, "use_fallback": True})
            continue
        fallback = [layer_map.ids[name] in ends for name in group["param_names"]]
        if all(fallback) or not any(fallback):
            routed.append({**group, "use_fallback": True} if all(fallback) else group)
            continue
        for suffix, wanted in (("@muon", False), ("@fallback", True)):
            part = [(n, p) for n, p, f in zip(group["param_names"], group["params"], fallback) if f is wanted]
            routed.append({**group, "name": group["name"] + suffix, "params": [p for _, p in part],
                           "param_names": [n for n, _ in part], **({"use_fallback": True} if wanted else {})})
    return routed


def _refuse_meta_tensors(groups: list[dict]) -> None:
    meta = next((name for g in groups for name, p in zip(g["param_names"], g["params"]) if p.is_meta), None)
    if meta is not None:
        raise ValueError(
            f"parameter {meta!r} is on the meta device: model.to_empty() or loading the weights replaces the "
            "parameters, and an optimizer built now would keep the placeholders and train nothing. Create the "
            "optimizer after the model is materialised (auto_layer_decay works on meta models, to inspect them)"
        )


def resolve_optimizer(opt: OptimizerSpec) -> Callable[..., torch.optim.Optimizer]:
    """A function ``(groups, *, lr, weight_decay, **kwargs) -> optimizer`` for ``opt``.

    Raises:
        ValueError: for an unknown name (the message lists the valid ones) or an optimizer
            that cannot take parameter groups.
    """
    if not isinstance(opt, str):
        if not callable(opt):
            raise TypeError(f"opt must be an optimizer name or class, got {opt!r}")
        return _direct(opt)
    key = opt.lower()
    if key in _SINGLE_GROUP_ONLY:
        raise ValueError(_SINGLE_GROUP_ONLY[key])
    timm_names = _timm_optimizer_names()
    if key.removeprefix(_LOOKAHEAD) in _MUON:
        if key.removeprefix(_LOOKAHEAD) not in timm_names:
            raise ValueError(f"{opt!r} needs timm's Muon (timm >= 1.0.21), which routes the embeddings, the head and "
                             "the no-decay groups to its AdamW fallback; torch.optim.Muon takes 2-D parameters only")
        return _via_timm(key)
    torch_optimizers = _torch_optimizers()
    if key in torch_optimizers:
        return _direct(torch_optimizers[key])
    if key in timm_names or (key.startswith(_LOOKAHEAD) and key[len(_LOOKAHEAD):] in timm_names):
        return _via_timm(key)
    valid = sorted(set(torch_optimizers) | set(timm_names))
    close = difflib.get_close_matches(key, valid, n=3)
    hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
    raise ValueError(f"unknown optimizer {opt!r}.{hint} Valid names: {', '.join(valid)}; or pass an optimizer class.")


def _direct(optimizer_cls: Callable[..., torch.optim.Optimizer]) -> Callable[..., torch.optim.Optimizer]:
    accepted = _accepted_kwargs(optimizer_cls)
    name = getattr(optimizer_cls, "__name__", repr(optimizer_cls))
    if optimizer_cls is getattr(torch.optim, "Muon", None):
        raise ValueError(
            "torch.optim.Muon takes 2-D parameters only, and a model's groups hold norms, biases and embeddings too: "
            "use opt='muon' (timm's Muon: the hidden matrices of the blocks to Muon, the rest to its AdamW fallback)"
        )

    def build(groups: list[dict], *, lr: float, weight_decay: float, **kwargs: Any) -> torch.optim.Optimizer:
        if accepted is not None:
            if "weight_decay" not in accepted:
                if weight_decay:
                    raise ValueError(f"{name} has no weight_decay argument; pass weight_decay=0")
            else:
                kwargs["weight_decay"] = weight_decay
            unknown = sorted(set(kwargs) - accepted - {"lr"})
            if unknown:
                raise TypeError(f"{name} does not accept {unknown}; it accepts {sorted(accepted)}")
        else:
            kwargs["weight_decay"] = weight_decay
        return optimizer_cls(groups, lr=lr, **kwargs)

    return build


def _via_timm(name: str) -> Callable[..., torch.optim.Optimizer]:
    from timm.optim import create_optimizer_v2

    def build(groups: list[dict], *, lr: float, weight_decay: float, **kwargs: Any) -> torch.optim.Optimizer:
        # Given a list of groups, timm's factory keeps them and only adds its per-optimizer defaults.
        return create_optimizer_v2(groups, opt=name, lr=lr, weight_decay=weight_decay, **kwargs)

    return build


def _accepted_kwargs(optimizer_cls: Callable) -> Optional[set[str]]:
    """Keyword arguments the optimizer takes besides ``params``; None if it takes ``**kwargs``."""
    try:
        parameters = inspect.signature(optimizer_cls).parameters
    except (TypeError, ValueError):
        return None
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()):
        return None
    return {n for n, p in parameters.items() if n != "params" and p.kind is not inspect.Parameter.VAR_POSITIONAL}


def _torch_optimizers() -> dict[str, type]:
    return {
        name.lower(): obj
        for name, obj in vars(torch.optim).items()
        if isinstance(obj, type) and issubclass(obj, torch.optim.Optimizer) and obj is not torch.optim.Optimizer
    }


def _timm_optimizer_names() -> list[str]:
    try:
        from timm.optim import list_optimizers
    except ImportError:  # timm is a dependency, but keep plain torch usable without it
        return []
    return list(list_optimizers())
