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

import logging

from .adapters.options import AutoStrategy
from .api import auto_layer_decay, layer_ids
from .core.groups import ParamGroupError, check_param_groups
from .core.layer_map import LayerIdError
from .core.report import LayerDecayReport, layer_decay_report
from .core.scales import LayerDecayError
from .integrations.optimizer import create_optimizer
from .rules import get_num_layer_for_convnext, get_num_layer_for_vit
from .seed import LayerDecayValueAssigner, get_parameter_groups

__version__ = "0.1.0"

__all__ = [
    "auto_layer_decay",
    "layer_ids",
    "AutoStrategy",
    "create_optimizer",
    "layer_decay_report",
    "LayerDecayReport",
    "check_param_groups",
    "get_parameter_groups",
    "LayerDecayValueAssigner",
    "get_num_layer_for_vit",
    "get_num_layer_for_convnext",
    "LayerIdError",
    "LayerDecayError",
    "ParamGroupError",
    "LayerDecayTrainer",
    "LayerDecayTrainingArguments",
]

_TRAINER_NAMES = ("LayerDecayTrainer", "LayerDecayTrainingArguments")


def __getattr__(name: str):
    # The Trainer integration imports transformers.Trainer (seconds); load it on first use only.
    if name in _TRAINER_NAMES:
        from .integrations import trainer

        return getattr(trainer, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

logging.getLogger(__name__).addHandler(logging.NullHandler())
