"""``transformers.TrainerCallback`` s for layer decay, usable with any Trainer subclass."""

from __future__ import annotations

from typing import Any

from transformers import TrainerCallback

from ..core.lr_ratios import check_lr_ratios


class LayerDecayWatchdog(TrainerCallback):
    """Warn, once per cause, at the first step where the optimizer's learning rates stop being
    ``head lr x scale`` (:func:`~hf_timm_layerdecay.core.lr_ratios.check_lr_ratios`): a scheduler
    with an absolute floor, DeepSpeed's scheduler writing one lr, a callback resetting the lrs.

    :class:`~hf_timm_layerdecay.LayerDecayTrainer` (and every :class:`LayerDecayMixin` Trainer)
    adds one; with a plain Trainer given layer-decayed groups, add it yourself:
    ``Trainer(..., optimizers=(optimizer, scheduler), callbacks=[LayerDecayWatchdog()])``.
    It checks when training begins and before every optimizer step (the lrs that step uses),
    reading each group's ``lr`` and ``scale``: microseconds.
    """

    def on_train_begin(self, args: Any, state: Any, control: Any, optimizer: Any = None, **kwargs: Any) -> None:
        if optimizer is not None:
            check_lr_ratios(optimizer)

    def on_pre_optimizer_step(self, args: Any, state: Any, control: Any, optimizer: Any = None, **kwargs: Any) -> None:
        # the lrs this step will use: a scheduler step after it may restore them, hiding a change
        # made for this one step (a hand-written warmup in a callback)
        if optimizer is not None:
            check_lr_ratios(optimizer)


class GradualUnfreezingCallback(TrainerCallback):
    """:class:`~hf_timm_layerdecay.unfreezing.GradualUnfreezing` in any Trainer: the head first,
    then one layer more every ``every`` optimizer steps (``unit="step"``) or epochs (``unit="epoch"``).

    The layers are frozen when training begins, after the Trainer built its optimizer from the
    parameters trainable then, so every layer is in its group (a ready optimizer given to a plain
    Trainer must hold them too: ``create_optimizer(..., frozen="include")``; this is checked).
    Parameters frozen by the user before are never unfrozen. On resume the layers unfrozen by the
    checkpoint's step are unfrozen at once.

    Example:
        ``trainer = LayerDecayTrainer(model=model, args=args, callbacks=[GradualUnfreezingCallback(every=100)])``
    """

    def __init__(self, every: int, unit: str = "step") -> None:
        if unit not in ("step", "epoch"):
            raise ValueError(f"unit must be 'step' or 'epoch', got {unit!r}")
        self.every = every
        self.unit = unit
        self.schedule = None

    def on_train_begin(self, args: Any, state: Any, control: Any, model: Any = None, optimizer: Any = None,
                       **kwargs: Any) -> None:
        from ..unfreezing import GradualUnfreezing

        self.schedule = GradualUnfreezing(model, every=self.every, optimizer=optimizer)
        done = state.global_step if self.unit == "step" else int(state.epoch or 0)
        self.schedule.load_state_dict({"steps": done})

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if self.unit == "step" and self.schedule is not None:
            self.schedule.step()

    def on_epoch_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if self.unit == "epoch" and self.schedule is not None:
            self.schedule.step()
