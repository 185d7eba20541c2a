"""Layer decay in Lightning (``pip install "hf_timm_layerdecay[lightning]"``).

The optimizer comes from :func:`~hf_timm_layerdecay.create_optimizer` in ``configure_optimizers``,
with any scheduler (its groups carry their real lrs)::

    def configure_optimizers(self):
        optimizer = create_optimizer(self, "adamw", lr=1e-3, layer_decay=0.75, frozen="include")
        scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=[g["lr"] for g in optimizer.param_groups],
                                                        total_steps=self.trainer.estimated_stepping_batches)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

and two callbacks: :class:`LayerDecayMonitor` (one lr series per layer, and the watchdog for lost
decay) and :class:`GradualUnfreezingFinetuning` (ULMFiT's unfreezing that keeps every layer at
its decayed lr, where Lightning's ``BackboneFinetuning`` adds the whole backbone as one group at
one lr; under DDP it needs ``strategy="ddp_find_unused_parameters_true"``). Lightning's own ``LearningRateMonitor`` names its series by the groups' names
(``lr-AdamW/layer_3_decay``).
"""

from __future__ import annotations

from typing import Any, Literal, Optional

try:
    from lightning.pytorch.callbacks import Callback
except ImportError as exc:  # an optional extra: say which
    raise ImportError(
        "hf_timm_layerdecay.integrations.lightning needs Lightning 2.x: pip install \"hf_timm_layerdecay[lightning]\""
    ) from exc

from ..core.lr_ratios import check_lr_ratios, layer_lr_series
from ..unfreezing import GradualUnfreezing


class LayerDecayMonitor(Callback):
    """Log one lr series per layer (``lr-layer_<id>``, the layer's own lr, without ``lr_mult``)
    at every training step, and warn (:func:`~hf_timm_layerdecay.check_lr_ratios`, once per
    cause) before every optimizer step where the lrs stop following the decay.

    Args:
        log_layers: log the per-layer series (``False``: only watch).
    """

    def __init__(self, log_layers: bool = True) -> None:
        self.log_layers = log_layers

    def on_train_batch_start(self, trainer: Any, pl_module: Any, batch: Any, batch_idx: int) -> None:
        if not self.log_layers or not trainer.optimizers:
            return
        series = layer_lr_series(trainer.optimizers[0])
        if series:
            pl_module.log_dict({f"lr-{name}": lr for name, lr in series.items()}, on_step=True,
                               on_epoch=False, logger=True, batch_size=1)

    def on_before_optimizer_step(self, trainer: Any, pl_module: Any, optimizer: Any) -> None:
        check_lr_ratios(optimizer)


class GradualUnfreezingFinetuning(Callback):
    """:class:`~hf_timm_layerdecay.GradualUnfreezing` in Lightning: the head first, then one layer
    more every ``every`` training steps (``unit="step"``) or epochs (``unit="epoch"``).

    Layers are frozen when training starts, after ``configure_optimizers`` built the optimizer
    from the parameters trainable then: every layer is in its group at its decayed lr, and only
    ``requires_grad`` changes (no ``add_param_group``, no group at one lr). An optimizer built
    from trainable parameters only, after something froze them, is refused with the fix
    (``create_optimizer(..., frozen="include")``). The schedule's position is saved in
    checkpoints and restored on resume.
    """

    def __init__(self, every: int, unit: Literal["step", "epoch"] = "step") -> None:
        if unit not in ("step", "epoch"):
            raise ValueError(f"unit must be 'step' or 'epoch', got {unit!r}")
        self.every = every
        self.unit = unit
        self.schedule: Optional[GradualUnfreezing] = None
        self._resumed_steps = 0

    def on_train_start(self, trainer: Any, pl_module: Any) -> None:
        _refuse_ddp_without_unused_parameters(trainer.strategy.model)
        self.schedule = GradualUnfreezing(pl_module, every=self.every, optimizer=trainer.optimizers[0])
        self.schedule.load_state_dict({"steps": self._resumed_steps})

    def on_train_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
        if self.unit == "step" and self.schedule is not None:
            self.schedule.step()

    def on_train_epoch_end(self, trainer: Any, pl_module: Any) -> None:
        if self.unit == "epoch" and self.schedule is not None:
            self.schedule.step()

    def state_dict(self) -> dict:
        return self.schedule.state_dict() if self.schedule is not None else {"steps": self._resumed_steps}

    def load_state_dict(self, state_dict: dict) -> None:
        self._resumed_steps = int(state_dict["steps"])


def _refuse_ddp_without_unused_parameters(wrapped: Any) -> None:
    """DDP all-reduces the gradients of the parameters it was built with, and by default fails at
    the first step where one of them gets none: a frozen layer. Unfreezing under DDP needs
    ``find_unused_parameters=True``, set before the schedule freezes anything."""
    from torch.nn.parallel import DistributedDataParallel

    if isinstance(wrapped, DistributedDataParallel) and not wrapped.find_unused_parameters:
        raise ValueError(
            "GradualUnfreezingFinetuning under DDP: the frozen layers get no gradient, which DDP refuses unless it "
            "looks for unused parameters. Use strategy='ddp_find_unused_parameters_true' (or "
            "DDPStrategy(find_unused_parameters=True))"
        )
