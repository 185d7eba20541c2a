"""What in a DeepSpeed config throws layer decay away, read from the config alone.

DeepSpeed builds its own optimizer from an ``optimizer`` section, from the parameter groups it is
given (``model_parameters``; the Trainer hands it the model's parameters in one group, which
``LayerDecayTrainer`` replaces with the layer-decay groups): the types in
:data:`GROUP_TAKING_OPTIMIZERS` and ``torch.optim`` classes keep every group as given, Muon and
the muP optimizers make groups of their own. Its schedulers set the lrs of every group. Which schedulers keep
each group's own lr was measured on DeepSpeed's own classes (``deepspeed.runtime.lr_schedules``,
``tests/integrations/test_deepspeed.py``):

* ``WarmupCosineLR`` multiplies each group's lr by one ratio: kept;
* ``WarmupLR`` and ``WarmupDecayLR`` warm every group up to ``warmup_max_lr``: one number writes
  that lr into every group (``"auto"``: the Trainer fills in ``learning_rate``), a per-group list
  or ``null`` keeps each group's own lr. ``WarmupLR``'s default (no ``warmup_max_lr``) is the
  groups' own lrs from DeepSpeed 0.18; ``WarmupDecayLR``'s default is 0.001;
* ``OneCycle`` and ``LRRangeTest`` set absolute lrs: lost.
"""

from __future__ import annotations

from typing import Optional

#: 'optimizer' section types that DeepSpeed builds from the parameter groups it is given, each group
#: as given (``DeepSpeedEngine._configure_basic_optimizer``, DeepSpeed 0.19.8); a ``torch.optim``
#: class name also is. Muon regroups the parameters itself (``_muon_param_groups``), the muP
#: optimizers rescale each parameter's lr by its width.
GROUP_TAKING_OPTIMIZERS = ("adam", "adamw", "adagrad", "lamb", "lion")

#: DeepSpeed's own section types that do not keep the groups they are given.
_REGROUPING_OPTIMIZERS = ("muon", "muadam", "muadamw", "musgd")

#: WarmupLR without warmup_max_lr warms each group up to its own lr from this DeepSpeed version.
_OWN_LR_DEFAULT_SINCE = (0, 18)


def deepspeed_layer_decay_problems(config: dict, deepspeed_version: Optional[str] = None) -> list[str]:
    """What in a DeepSpeed config would throw layer decay away, and how to keep it.

    Args:
        config: the DeepSpeed config (a dict, as the Trainer holds it).
        deepspeed_version: the installed DeepSpeed's version (default: read from the package
            when it is installed); older versions give ``WarmupLR`` another default.

    Example:
        >>> deepspeed_layer_decay_problems({"zero_optimization": {"stage": 2}})
        []
        >>> deepspeed_layer_decay_problems({"scheduler": {"type": "WarmupCosineLR", "params": {"total_num_steps": 10}}})
        []
        >>> deepspeed_layer_decay_problems({"optimizer": {"type": "AdamW"}, "scheduler": {"type": "WarmupCosineLR"}})
        []
        >>> len(deepspeed_layer_decay_problems({"optimizer": {"type": "Muon"}, "scheduler": {"type": "WarmupDecayLR"}}))
        2
    """
    problems = []
    if "optimizer" in config and not takes_param_groups(config["optimizer"]):
        kind = config["optimizer"].get("type")
        problems.append(
            f"the DeepSpeed config's 'optimizer' section has type {kind!r}, which makes parameter groups of its own "
            "(or is not known to keep the groups it is given): layer decay would be lost. Use one of "
            f"{', '.join(GROUP_TAKING_OPTIMIZERS)} or a torch.optim class there (DeepSpeed builds them from the "
            "layer-decay groups), or remove the section and set the optimizer through TrainingArguments (optim, "
            "learning_rate, weight_decay) so the Trainer creates it."
        )
    scheduler = config.get("scheduler")
    if scheduler is not None:
        problem = _scheduler_problem(scheduler, deepspeed_version or _installed_version())
        if problem:
            problems.append(problem)
    return problems


def refuse_layer_decay_problems(config: dict, groups: Optional[list[dict]] = None, *, who: str = "layer decay") -> None:
    """Raise a ``ValueError`` naming every problem of :func:`deepspeed_layer_decay_problems`, and
    of :func:`frozen_group_problem` when the ``groups`` are given; ``who`` opens the message."""
    problems = deepspeed_layer_decay_problems(config)
    frozen = None if groups is None else frozen_group_problem(groups, config)
    if frozen:
        problems.append(frozen)
    if problems:
        raise ValueError(f"{who} and this DeepSpeed config: " + " Also: ".join(problems))


def takes_param_groups(section: dict) -> bool:
    """Whether DeepSpeed builds the optimizer of this ``optimizer`` section from the parameter
    groups it is given, each kept as given (so layer-decay groups keep their lrs).

    Example:
        >>> takes_param_groups({"type": "AdamW"}), takes_param_groups({"type": "SGD"}), takes_param_groups({"type": "Muon"})
        (True, True, False)
    """
    import torch

    kind = str(section.get("type", ""))
    if kind.lower() in GROUP_TAKING_OPTIMIZERS:
        return True
    # DeepSpeed reads its own types in any case ("Muon" is its Muon, not torch's) and any other
    # name as a torch.optim class, case as written
    return kind.lower() not in _REGROUPING_OPTIMIZERS and isinstance(getattr(torch.optim, kind, None), type)


def frozen_group_problem(groups: list[dict], config: dict) -> Optional[str]:
    """ZeRO stages 1 and 2 fail on a group without a trainable parameter (an ``IndexError`` in
    ``deepspeed.initialize``, DeepSpeed 0.19.8): what ``frozen="include"`` makes of a layer frozen
    whole. The message names the groups and the fix.

    Example:
        >>> import torch
        >>> frozen = torch.nn.Parameter(torch.ones(2), requires_grad=False)
        >>> frozen_group_problem([{"name": "layer_1_decay", "params": [frozen]}], {"zero_optimization": {"stage": 2}})[:57]
        'ZeRO stage 2 cannot take groups without a trainable param'
    """
    stage = (config.get("zero_optimization") or {}).get("stage", 0)
    if stage not in (1, 2):
        return None
    frozen = [g.get("name", f"group {i}") for i, g in enumerate(groups) if not any(p.requires_grad for p in g["params"])]
    if not frozen:
        return None
    return (f"ZeRO stage {stage} cannot take groups without a trainable parameter (DeepSpeed fails in initialize), and "
            f"frozen='include' made {len(frozen)}: {', '.join(frozen[:4])}. Use frozen='skip' with ZeRO 1/2 (unfreezing "
            "then needs new groups), or ZeRO stage 3, which keeps them")


def _scheduler_problem(scheduler: dict, version: Optional[str]) -> Optional[str]:
    kind = scheduler.get("type")
    params = scheduler.get("params") or {}
    keep = ("Keep the decay with WarmupCosineLR, with WarmupLR / WarmupDecayLR whose warmup_max_lr is null (each "
            "group warms up to its own lr), or by removing the section and using lr_scheduler_type.")
    if kind == "WarmupCosineLR":
        return None
    if kind in ("WarmupLR", "WarmupDecayLR"):
        own_default = kind == "WarmupLR" and _at_least(version, _OWN_LR_DEFAULT_SINCE)
        max_lr = params.get("warmup_max_lr", None if own_default else 0.001)
        if max_lr is None or isinstance(max_lr, (list, tuple)):
            return None
        given = "" if "warmup_max_lr" in params else f" (DeepSpeed {version or '?'}'s default)"
        return (f"the DeepSpeed scheduler {kind} has warmup_max_lr={max_lr!r}{given}: it writes that one lr into every "
                f"parameter group and layer decay is lost. {keep}")
    return f"the DeepSpeed scheduler {kind!r} sets absolute lrs, the same for every group: layer decay is lost. {keep}"


def _installed_version() -> Optional[str]:
    from importlib import metadata

    try:
        return metadata.version("deepspeed")
    except metadata.PackageNotFoundError:
        return None


def _at_least(version: Optional[str], wanted: tuple[int, int]) -> bool:
    if version is None:
        return False  # not installed: assume the older default, which loses the decay
    parts = [int(p) for p in version.split("+")[0].split(".")[:2] if p.isdigit()]
    return tuple(parts) >= wanted
