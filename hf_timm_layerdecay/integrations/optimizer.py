"""``create_optimizer``: layer-decayed parameter groups handed to a real optimizer."""

from __future__ import annotations

import difflib
import inspect
import logging
from typing import Any, Callable, Optional, Union

import torch
from torch import nn

from ..api import auto_layer_decay
from ..core.checks import check_number
from ..core.scales import LayerDecay
from .resume import guard_resume

logger = logging.getLogger(__name__)

OptimizerSpec = Union[str, Callable[..., torch.optim.Optimizer]]
#: torch optimizers that cannot take several parameter groups.
_SINGLE_GROUP_ONLY = {"lbfgs": "LBFGS supports a single parameter group, so it cannot apply per-layer learning rates"}
_LOOKAHEAD = "lookahead_"
#: Keyword arguments of create_optimizer that belong to auto_layer_decay, not to the optimizer.
_GROUP_OPTIONS = frozenset(inspect.signature(auto_layer_decay).parameters) - {"model", "lr", "layer_decay", "weight_decay"}


def create_optimizer(
    model: nn.Module,
    opt: OptimizerSpec = "adamw",
    *,
    lr: float,
    weight_decay: float = 0.05,
    layer_decay: Optional[LayerDecay] = 0.75,
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
        lr: base learning rate, the head's; group ``i`` gets ``lr * scale_i``. It is also the
            optimizer's default lr, which schedulers such as transformers'
            ``cosine_with_min_lr`` read.
        weight_decay, layer_decay: as in :func:`~hf_timm_layerdecay.auto_layer_decay`.
        **kwargs: the other options of :func:`~hf_timm_layerdecay.auto_layer_decay`
            (``strategy``, ``min_scale``, ``normalize_depth``, ``no_weight_decay``, ...) go to
            it; everything else goes to the optimizer (``betas``, ``momentum``, ``fused``, ...).

    The optimizer refuses to ``load_state_dict`` a checkpoint whose groups differ from its own
    (another ``layer_decay``, strategy or model), instead of silently restoring other lrs. A
    model on the meta device is refused: materialising it (``to_empty``, loading weights)
    replaces its parameters, and an optimizer built before would hold the old ones and train
    nothing (``auto_layer_decay`` works on such a model, to inspect it).

    Example:
        >>> import torch
        >>> model = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.ReLU(), torch.nn.Linear(4, 2))
        >>> optimizer = create_optimizer(model, "sgd", lr=0.1, layer_decay=0.5, momentum=0.9)
        >>> [(g["name"], g["lr"]) for g in optimizer.param_groups]
        [('layer_0_decay', 0.05), ('layer_0_no_decay', 0.05), ('layer_1_decay', 0.1), ('layer_1_no_decay', 0.1)]
    """
    check_number("lr", lr, positive=True)  # the optimizer's default lr too: None is no choice here
    build = resolve_optimizer(opt)
    group_options = {k: kwargs.pop(k) for k in list(kwargs) if k in _GROUP_OPTIONS}
    groups = auto_layer_decay(model, lr=lr, layer_decay=layer_decay, weight_decay=weight_decay, **group_options)
    _refuse_meta_tensors(groups)
    optimizer = guard_resume(build(groups, lr=lr, weight_decay=weight_decay, **kwargs))
    logger.info("created %s with %d parameter groups", type(optimizer).__name__, len(optimizer.param_groups))
    return optimizer


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
    torch_optimizers = _torch_optimizers()
    if key in torch_optimizers:
        return _direct(torch_optimizers[key])
    timm_names = _timm_optimizer_names()
    if key in timm_names or (key.startswith(_LOOKAHEAD) and key[len(_LOOKAHEAD):] in timm_names):
        return _via_timm(key)
    valid = sorted(set(torch_optimizers) | set(timm_names))
    close = difflib.get_close_matches(key, valid, n=3)
    hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
    raise ValueError(f"unknown optimizer {opt!r}.{hint} Valid names: {', '.join(valid)}; or pass an optimizer class.")


def _direct(optimizer_cls: Callable[..., torch.optim.Optimizer]) -> Callable[..., torch.optim.Optimizer]:
    accepted = _accepted_kwargs(optimizer_cls)
    name = getattr(optimizer_cls, "__name__", repr(optimizer_cls))

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
