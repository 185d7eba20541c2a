"""What differs between the timm and transformers versions this library supports.

Each helper names the release that brought the feature and what happens without it. The
supported and verified versions are listed in README.md ("Supported versions").
"""

from __future__ import annotations

import inspect
from typing import Any, Callable, Optional

import torch
from torch import nn


def is_optimizer_factory(optimizer_cls: Any) -> bool:
    """Whether the Trainer's optimizer choice is a factory (Muon, Dion: transformers >= 5.2) that
    builds its own groups rather than an optimizer class taking parameter groups.

    Before 5.2 the Trainer instantiated every choice as ``optimizer_cls(groups, **kwargs)``, so no
    choice is a factory there.

    Example:
        >>> is_optimizer_factory(torch.optim.AdamW)
        False
    """
    try:
        from transformers.trainer_optimizer import is_optimizer_factory as transformers_is_factory
    except ImportError:  # transformers < 5.2: no factories
        return False
    return transformers_is_factory(optimizer_cls)


def create_optimizer_takes_model(create_optimizer: Callable[..., Any]) -> bool:
    """Whether ``Trainer.create_optimizer`` takes the model to optimize (transformers >= 5.3);
    before, it always optimizes ``trainer.model``.

    Example:
        >>> from transformers import Trainer
        >>> import transformers
        >>> from packaging.version import Version
        >>> create_optimizer_takes_model(Trainer.create_optimizer) == (Version(transformers.__version__) >= Version("5.3"))
        True
    """
    return "model" in inspect.signature(create_optimizer).parameters


def call_create_optimizer(
    create_optimizer: Callable[..., torch.optim.Optimizer], trainer: Any, model: Optional[nn.Module]
) -> torch.optim.Optimizer:
    """``create_optimizer(model)`` where the Trainer takes a model; else ``create_optimizer()``,
    refusing a ``model`` other than the Trainer's own, which that version would silently ignore."""
    if create_optimizer_takes_model(create_optimizer):
        return create_optimizer(model)
    if model is not None and model is not trainer.model and model is not getattr(trainer, "model_wrapped", None):
        import transformers

        raise TypeError(
            f"Trainer.create_optimizer of transformers {transformers.__version__} always optimizes trainer.model; "
            "create_optimizer(model=...) with another model needs transformers >= 5.3"
        )
    return create_optimizer()
