"""Layer-wise learning-rate decay (LLRD) for any PyTorch model, timm and transformers included.

Quick use::

    from hf_timm_layerdecay import auto_layer_decay, create_optimizer

    groups = auto_layer_decay(model, lr=1e-3, layer_decay=0.75)   # list of param-group dicts
    optimizer = torch.optim.AdamW(groups, lr=1e-3)
    # or, in one step:
    optimizer = create_optimizer(model, "adamw", lr=1e-3, layer_decay=0.75)

The pipeline is ``model -> layer ids -> scales -> groups``: :func:`layer_ids` gives every
parameter a layer id (0 = stem/embeddings, max = head), a decay turns ids into lr scales, and the
groups carry the real per-group ``lr`` so that every scheduler keeps the decay.
"""

import importlib
import logging
from typing import TYPE_CHECKING

__version__ = "0.1.0"

#: Public name -> the module that defines it. Loaded on first use (PEP 562): importing the
#: package costs nothing, so the command line answers `--help` without importing torch.
_EXPORTS = {
    "auto_layer_decay": ".api",
    "layer_ids": ".api",
    "AutoStrategy": ".config",
    "LayerDecayConfig": ".config",
    "create_optimizer": ".integrations.optimizer",
    "accelerate_optimizer": ".integrations.accelerate",
    "layer_decay_report": ".core.report",
    "LayerDecayReport": ".core.report",
    "check_param_groups": ".core.groups",
    "get_parameter_groups": ".seed",
    "LayerDecayValueAssigner": ".seed",
    "get_num_layer_for_vit": ".rules",
    "get_num_layer_for_convnext": ".rules",
    "LayerIdError": ".core.layer_map",
    "LayerDecayError": ".core.scales",
    "LayerDecayWarning": ".core.scales",
    "ParamGroupError": ".core.groups",
    "LayerDecayTrainer": ".integrations.trainer",
    "LayerDecayTrainingArguments": ".integrations.trainer",
    "LayerDecayMixin": ".integrations.trainer",
    "LayerDecayWatchdog": ".integrations.callbacks",
    "GradualUnfreezingCallback": ".integrations.callbacks",
    "GradualUnfreezing": ".unfreezing",
    "check_lr_ratios": ".core.lr_ratios",
    "register_adapter": ".adapters.registry",
    "unregister_adapter": ".adapters.registry",
    "RuleAdapter": ".adapters.registry",
}

__all__ = list(_EXPORTS)

if TYPE_CHECKING:  # for type checkers and IDEs; at run time the names load lazily
    from .config import AutoStrategy, LayerDecayConfig
    from .api import auto_layer_decay, layer_ids
    from .core.groups import ParamGroupError, check_param_groups
    from .core.layer_map import LayerIdError
    from .core.report import LayerDecayReport, layer_decay_report
    from .core.scales import LayerDecayError, LayerDecayWarning
    from .integrations.optimizer import create_optimizer
    from .integrations.accelerate import accelerate_optimizer
    from .core.lr_ratios import check_lr_ratios
    from .adapters.registry import RuleAdapter, register_adapter, unregister_adapter
    from .integrations.callbacks import GradualUnfreezingCallback, LayerDecayWatchdog
    from .unfreezing import GradualUnfreezing
    from .integrations.trainer import LayerDecayMixin, LayerDecayTrainer, LayerDecayTrainingArguments
    from .rules import get_num_layer_for_convnext, get_num_layer_for_vit
    from .seed import LayerDecayValueAssigner, get_parameter_groups


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value  # the next access is a plain attribute lookup
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])


logging.getLogger(__name__).addHandler(logging.NullHandler())
