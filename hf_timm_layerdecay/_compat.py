"""What differs between the timm and transformers versions this library supports.

Each helper names the release that brought the feature and what happens without it. The
supported and verified versions are listed in README.md ("Supported versions").
"""

from __future__ import annotations

import inspect
import warnings
from typing import Any, Callable, Optional

import torch
from torch import nn


def create_timm_model(name: str, device: str = "meta", **kwargs: Any) -> nn.Module:
    """``timm.create_model(name, pretrained=False)`` built on ``device``.

    Where this timm or torch cannot build the model on the meta device, it is built on the CPU
    instead (real memory and initialization time), with a warning that says so: timm before
    1.0.21 computes the drop-path rates of ViTs and others with ``.item()``, which meta tensors
    do not have, and torch 2.8 has no meta kernel for ``torch.unique`` (timm's RegNets).

    Example:
        >>> model = create_timm_model("resnet18")
        >>> model.fc.weight.device.type
        'meta'
    """
    import timm

    try:
        with torch.device(device):
            return timm.create_model(name, pretrained=False, **kwargs)
    except (RuntimeError, NotImplementedError) as exc:
        if torch.device(device).type != "meta" or "meta" not in str(exc).lower():
            raise
        warnings.warn(
            f"timm {timm.__version__} with torch {torch.__version__} cannot build {name} on the meta device "
            f"({str(exc).splitlines()[0][:120]}); building it on the CPU instead, with real memory and "
            "initialization time",
            UserWarning,
            stacklevel=2,
        )
    return timm.create_model(name, pretrained=False, **kwargs)


def timm_builds_on_meta() -> bool:
    """Whether this timm builds a ViT on the meta device (timm >= 1.0.21); the zoo sweeps,
    which build every architecture there, need it.

    Example:
        >>> import timm
        >>> from packaging.version import Version
        >>> timm_builds_on_meta() == (Version(timm.__version__) >= Version("1.0.21"))
        True
    """
    import timm

    try:
        with torch.device("meta"):
            timm.create_model("vit_tiny_patch16_224", pretrained=False)
    except (RuntimeError, NotImplementedError):
        return False
    return True


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
    refusing a ``model`` other than the Trainer's own (or a wrapper of it: DDP, DataParallel,
    ``torch.compile``), which that version would silently ignore."""
    if create_optimizer_takes_model(create_optimizer):
        return create_optimizer(model)
    from .adapters.wrappers import unwrap

    own = {id(trainer.model), id(getattr(trainer, "model_wrapped", None))}
    if model is not None and id(model) not in own and id(unwrap(model)) not in own:
        import transformers

        raise TypeError(
            f"Trainer.create_optimizer of transformers {transformers.__version__} always optimizes trainer.model; "
            "create_optimizer(model=...) with another model needs transformers >= 5.3"
        )
    return create_optimizer()


def fix_timm_group_matcher(model: nn.Module, matcher: Any) -> tuple[Any, Optional[str]]:
    """A ``group_matcher()`` result with what timm itself fixed since, and a note saying so.

    timm before 1.0.31: ``VisionTransformer`` and ``Eva`` leave ``norm_pre`` (the norm between the
    patch embedding and block 0 of CLIP and Perception Encoder models) out of the stem pattern, so
    their final-norm pattern ``^norm`` takes it and it gets the head's lr although it runs before
    every block. It is added to the stem, as timm 1.0.31 has it. Any other matcher is returned as
    it is.

    Example:
        >>> import timm
        >>> model = create_timm_model("vit_tiny_patch16_224", pre_norm=True)
        >>> matcher, note = fix_timm_group_matcher(model, {"stem": r"^cls_token|pos_embed|patch_embed"})
        >>> matcher["stem"], note is not None
        ('^cls_token|pos_embed|patch_embed|^norm_pre', True)
    """
    from timm.models.eva import Eva
    from timm.models.vision_transformer import VisionTransformer

    stem = matcher.get("stem") if isinstance(matcher, dict) else None
    if not isinstance(model, (VisionTransformer, Eva)) or not isinstance(stem, str) or "norm_pre" in stem:
        return matcher, None
    if not any(name.startswith("norm_pre.") for name, _ in model.named_parameters()):
        return matcher, None
    note = (
        f"{type(model).__name__}.group_matcher() of this timm puts norm_pre in the head group although it runs "
        "before the blocks; it is placed in the stem, as timm >= 1.0.31 does"
    )
    return {**matcher, "stem": stem + "|^norm_pre"}, note
