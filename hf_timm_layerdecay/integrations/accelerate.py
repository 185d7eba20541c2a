"""The optimizer for ``accelerator.prepare`` in a custom accelerate loop, DeepSpeed plugin included.

Without DeepSpeed, or with a DeepSpeed config that has no ``optimizer`` section, the optimizer is
:func:`~hf_timm_layerdecay.create_optimizer`'s (DeepSpeed takes it as its client optimizer). With
an ``optimizer`` section DeepSpeed builds the optimizer itself, from what accelerate's
``DummyOptim`` holds: the layer-decay groups go there, where a hand-written loop usually puts
``model.parameters()`` in one group. Either way the DeepSpeed config is read first, and what in it
would throw the decay away is refused with the fix (:mod:`.deepspeed`)::

    accelerator = Accelerator()          # accelerate launch --use_deepspeed --deepspeed_config_file ds.json
    optimizer = accelerate_optimizer(accelerator, model, lr=1e-3, layer_decay=0.75)
    scheduler = DummyScheduler(optimizer, total_num_steps=1000, warmup_num_steps=100)  # a scheduler section
    model, optimizer, loader, scheduler = accelerator.prepare(model, optimizer, loader, scheduler)
"""

from __future__ import annotations

import math
from typing import Any, Callable, Optional

from torch import nn

from ..api import auto_layer_decay
from ..config import LayerDecayConfig, split_options
from .deepspeed import refuse_layer_decay_problems
from .optimizer import OptimizerSpec, create_optimizer
from .resume import refuse_other_groups


def accelerate_optimizer(
    accelerator: Any,
    model: nn.Module,
    opt: Optional[OptimizerSpec] = None,
    *,
    lr: float,
    config: Optional[LayerDecayConfig] = None,
    **kwargs: Any,
) -> Any:
    """The layer-decayed optimizer to hand ``accelerator.prepare``, whatever accelerate runs.

    Args:
        accelerator: the ``accelerate.Accelerator`` of the loop (its DeepSpeed plugin, if any,
            holds the config read here).
        model: the model to optimize, before ``prepare``.
        opt: the optimizer (as :func:`~hf_timm_layerdecay.create_optimizer` takes it; default
            ``"adamw"``). Not with a DeepSpeed ``optimizer`` section, which chooses the optimizer.
        lr: the head's lr; group ``i`` gets ``lr * scale_i``.
        config: a :class:`~hf_timm_layerdecay.LayerDecayConfig`.
        **kwargs: :class:`~hf_timm_layerdecay.LayerDecayConfig` fields, and without an
            ``optimizer`` section the optimizer's own arguments (``betas``, ``fused``, ...).

    Returns:
        :func:`~hf_timm_layerdecay.create_optimizer`'s optimizer, or, when the DeepSpeed config
        has an ``optimizer`` section, an ``accelerate.utils.DummyOptim`` holding the layer-decay
        groups: DeepSpeed builds the section's optimizer from them, each group with its own lr
        and weight decay (accelerate fills the section's ``"auto"`` ``lr`` / ``weight_decay``
        with ``lr`` / ``weight_decay``: the defaults the groups override).

    Raises:
        ValueError: the DeepSpeed config would lose the decay (a section optimizer that makes
            its own groups, a scheduler section that writes one lr into every group, groups ZeRO
            1/2 cannot take), ``opt`` or optimizer arguments beside an ``optimizer`` section
            (which would ignore them), or a section ``lr`` / ``weight_decay`` other than
            ``lr`` / ``weight_decay`` (which the groups would override).

    After ``prepare``, ``check_lr_ratios(optimizer)`` reads the lrs DeepSpeed's optimizer really
    holds, ZeRO-3's empty groups included (by their ``param_names``). ``accelerator.load_state``
    of a checkpoint saved with other groups (another ``layer_decay``, strategy or model) raises
    :class:`~hf_timm_layerdecay.integrations.resume.ResumeMismatchError` instead of bringing back
    the checkpoint's lrs (:func:`refuse_other_groups_after_load`).
    """
    ds_config = deepspeed_config(accelerator)
    if ds_config is None or "optimizer" not in ds_config:
        optimizer = create_optimizer(model, opt or "adamw", lr=lr, config=config, **kwargs)
        if ds_config is not None:
            refuse_layer_decay_problems(ds_config, optimizer.param_groups, who="accelerate_optimizer")
        return optimizer

    from accelerate.utils.deepspeed import DummyOptim  # exported by accelerate.utils only when DeepSpeed is installed

    section = ds_config["optimizer"]
    options, extra = split_options(kwargs)
    if opt is not None or extra:
        given = ", ".join(([f"opt={opt!r}"] if opt is not None else []) + list(extra))
        raise ValueError(
            f"the DeepSpeed config has an 'optimizer' section ({section.get('type')!r}): DeepSpeed builds that optimizer "
            f"with the section's arguments, and {given} would be ignored. Leave them out, or remove the section so that "
            "the optimizer is built here"
        )
    config = LayerDecayConfig.from_options(config, **options)
    # accelerate fills only "auto" values, and every group overrides the section's (transformers'
    # Trainer refuses such a mismatch itself, accelerate does not)
    for key, ours in (("lr", lr), ("weight_decay", config.weight_decay)):
        given = (section.get("params") or {}).get(key, "auto")
        if given != "auto" and not math.isclose(float(given), ours):
            raise ValueError(
                f"the DeepSpeed 'optimizer' section has {key} {given} and accelerate_optimizer got {key}={ours}: every "
                f"group carries its own {key} from {ours} and overrides the section's. Set the section's {key} to "
                f"\"auto\" or {ours}"
            )
    groups = auto_layer_decay(model, config, lr=lr)
    refuse_layer_decay_problems(ds_config, groups, who="accelerate_optimizer")
    accelerator.register_load_state_pre_hook(refuse_other_groups_after_load(accelerator, model, groups))
    return DummyOptim(params=groups, lr=lr, weight_decay=config.weight_decay)


def refuse_other_groups_after_load(accelerator: Any, model: nn.Module, groups: list[dict]) -> Callable[[list, str], None]:
    """An ``Accelerator.load_state`` hook for the optimizer DeepSpeed builds from ``groups`` of
    ``model``.

    Torch's ``load_state_dict`` brings back the checkpoint's groups, lrs included; the optimizer
    that :func:`~hf_timm_layerdecay.create_optimizer` builds refuses a checkpoint with other
    groups before loading it (:func:`~.resume.guard_resume`), but DeepSpeed builds this one inside
    ``prepare``, out of reach. accelerate runs its "pre" hooks after DeepSpeed's
    ``load_checkpoint``, so this one compares what was loaded with the groups this run made and
    raises :class:`~.resume.ResumeMismatchError` before training goes on with the checkpoint's lrs.
    """
    made = [{key: value for key, value in group.items() if key != "params"} for group in groups]

    def hook(models: list, input_dir: str) -> None:
        wrapped = getattr(accelerator, "deepspeed_engine_wrapped", None)
        if wrapped is None or wrapped.engine.module is not model:  # another model's engine, or none yet
            return
        optimizer = getattr(wrapped.engine, "optimizer", None)
        if optimizer is not None:
            refuse_other_groups(optimizer.param_groups, made)

    return hook


def deepspeed_config(accelerator: Any) -> Optional[dict]:
    """The DeepSpeed config an accelerator runs with, or None without DeepSpeed."""
    plugin = getattr(getattr(accelerator, "state", None), "deepspeed_plugin", None)
    return None if plugin is None else plugin.deepspeed_config
