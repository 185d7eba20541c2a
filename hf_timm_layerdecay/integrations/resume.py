"""Refuse to resume an optimizer from a checkpoint whose parameter groups are different.

``Optimizer.load_state_dict`` pairs saved groups with current groups by position and then
overwrites every hyperparameter with the saved one. A checkpoint made with another
``layer_decay`` therefore silently brings back its own learning rates, and one made with another
grouping either fails on a size mismatch or, when sizes happen to agree, loads the moments of
one layer into another. The groups of this library carry ``name``, ``scale`` and
``param_names``, which is enough to tell.
"""

from __future__ import annotations

import logging
import math
from typing import Any

import torch

logger = logging.getLogger(__name__)

class ResumeMismatchError(ValueError):
    """The optimizer state being loaded was saved with different parameter groups."""


def guard_resume(optimizer: torch.optim.Optimizer) -> torch.optim.Optimizer:
    """Make ``optimizer.load_state_dict`` raise :class:`ResumeMismatchError` when the saved
    groups differ from the current ones in number, names, parameter names or scale.

    Returns the optimizer, so it can wrap a constructor call. Guarding an optimizer twice adds
    nothing. Under DeepSpeed the hook sits on the optimizer DeepSpeed wraps, which every ZeRO
    stage's ``load_checkpoint`` loads through.

    Example:
        >>> import torch
        >>> from hf_timm_layerdecay import auto_layer_decay
        >>> model = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Linear(2, 2))
        >>> saved = torch.optim.SGD(auto_layer_decay(model, lr=0.1, layer_decay=0.5), lr=0.1).state_dict()
        >>> resumed = guard_resume(torch.optim.SGD(auto_layer_decay(model, lr=0.1, layer_decay=0.9), lr=0.1))
        >>> resumed.load_state_dict(saved)
        Traceback (most recent call last):
        ...
        hf_timm_layerdecay.integrations.resume.ResumeMismatchError: the checkpoint's optimizer has other parameter groups than this run: group 0 (layer_0_decay): scale 0.5 in the checkpoint, 0.9 now; group 1 (layer_0_no_decay): scale 0.5 in the checkpoint, 0.9 now. Was it saved with another layer_decay, strategy or model? Resume with the settings of the checkpoint, or load only the model weights and start a fresh optimizer.
    """
    target = inner_optimizer(optimizer)
    if target is None:
        logger.warning("%s cannot take a load_state_dict hook: resuming it is not checked", type(optimizer).__name__)
    elif _check_saved_groups not in target._optimizer_load_state_dict_pre_hooks.values():  # guarded once
        target.register_load_state_dict_pre_hook(_check_saved_groups)
    return optimizer


def inner_optimizer(optimizer: Any) -> Any:
    """The optimizer that really loads the state: wrappers such as timm's Lookahead
    (``_base_optimizer``) or accelerate's AcceleratedOptimizer (``optimizer``) delegate to it."""
    seen = set()
    while not hasattr(optimizer, "_optimizer_load_state_dict_pre_hooks"):
        seen.add(id(optimizer))
        inner = getattr(optimizer, "_base_optimizer", None) or getattr(optimizer, "optimizer", None)
        if inner is None or id(inner) in seen:
            return None
        optimizer = inner
    return optimizer


def _check_saved_groups(optimizer: torch.optim.Optimizer, state_dict: dict) -> None:
    refuse_other_groups(state_dict.get("param_groups", []), optimizer.param_groups)


def refuse_other_groups(saved: list[dict], current: list[dict]) -> None:
    """Raise :class:`ResumeMismatchError` naming how the ``saved`` groups differ from ``current``."""
    differences = group_differences(saved, current)
    if differences:
        shown = "; ".join(differences[:4]) + (f"; ... ({len(differences) - 4} more)" if len(differences) > 4 else "")
        raise ResumeMismatchError(
            f"the checkpoint's optimizer has other parameter groups than this run: {shown}. Was it saved with "
            "another layer_decay, strategy or model? Resume with the settings of the checkpoint, or load only the "
            "model weights and start a fresh optimizer."
        )


def group_differences(saved: list[dict], current: list[dict]) -> list[str]:
    """Human-readable differences between saved and current param groups (empty if none)."""
    if len(saved) != len(current):
        return [f"{len(saved)} groups in the checkpoint, {len(current)} now"]
    found = []
    for index, (old, new) in enumerate(zip(saved, current)):
        label = f"group {index} ({new.get('name', '?')})"
        for key in ("name", "param_names"):
            if key in old and key in new and list(old[key]) != list(new[key]):
                found.append(f"{label}: {key} differ ({_short(old[key])} in the checkpoint, {_short(new[key])} now)")
        if "scale" in old and "scale" in new and not math.isclose(old["scale"], new["scale"], rel_tol=1e-9):
            found.append(f"{label}: scale {old['scale']:.4g} in the checkpoint, {new['scale']:.4g} now")
    return found


def _short(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return f"[{', '.join(map(str, value[:2]))}{', ...' if len(value) > 2 else ''}] ({len(value)})"
    return repr(value)
