"""Gradual unfreezing on the layer map (ULMFiT, Howard & Ruder 2018): the head first, then one
layer more every ``every`` steps, top down.

Only ``requires_grad`` changes, so the optimizer's groups never do: build the optimizer with
``frozen="include"`` and every layer is already in its group, at its decayed lr, when its turn
comes (torch optimizers skip a parameter without a gradient until then). Any scheduler keeps
working, and a checkpoint holds the same groups at every step.
"""

from __future__ import annotations

from typing import Any, Optional

from torch import nn

from .api import resolve_layer_map
from .config import Strategy
from .core.checks import check_number


class GradualUnfreezing:
    """Unfreeze a model layer by layer, from the head down, on its layer ids.

    At construction every parameter below the head's layer id is frozen; after each ``every``
    calls of :meth:`step` the next layer down is unfrozen, until all are. Parameters the user had
    frozen before (a LoRA run's base model) are never touched.

    Args:
        model: the model, bare or wrapped, as given to ``create_optimizer``.
        every: steps between two unfreezings (>= 1).
        optimizer: checked to hold every parameter this schedule will unfreeze, so that none is
            unfrozen into no group. Build it first (every layer is then trainable and grouped)
            or with ``frozen="include"``, and pass it; without it nothing is checked (call
            :meth:`check_optimizer` yourself).
        strategy: how layer ids are found; the one the optimizer's groups were built with.

    Example:
        >>> import torch
        >>> from hf_timm_layerdecay import create_optimizer
        >>> model = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Linear(2, 2), torch.nn.Linear(2, 1))
        >>> optimizer = create_optimizer(model, "adamw", lr=1e-3, frozen="include")
        >>> unfreezing = GradualUnfreezing(model, every=10, optimizer=optimizer)
        >>> unfreezing.unfrozen_layers, model[0].weight.requires_grad
        ([2], False)
        >>> for _ in range(20):
        ...     unfreezing.step()
        >>> unfreezing.unfrozen_layers, model[0].weight.requires_grad
        ([0, 1, 2], True)
    """

    def __init__(
        self,
        model: nn.Module,
        *,
        every: int,
        optimizer: Optional[Any] = None,
        strategy: Strategy = "auto",
    ) -> None:
        if isinstance(every, bool) or not isinstance(every, int) or every < 1:
            raise ValueError(f"every must be an int >= 1 (steps between two unfreezings), got {every!r}")
        layer_map = resolve_layer_map(model, strategy)
        self.every = every
        self.head_id = layer_map.head_id
        self.steps = 0
        self._by_layer: dict[int, list[nn.Parameter]] = {}
        for name, param in model.named_parameters():
            if param.requires_grad:  # what the user froze stays frozen
                self._by_layer.setdefault(layer_map.ids[name], []).append(param)
        if optimizer is not None:
            self.check_optimizer(optimizer, model)
        self._apply()

    @property
    def lowest_unfrozen(self) -> int:
        """The lowest layer id unfrozen now (the head's at first)."""
        return max(self.head_id - self.steps // self.every, 0)

    @property
    def unfrozen_layers(self) -> list[int]:
        """The layer ids (that hold parameters this schedule manages) unfrozen now."""
        return sorted(i for i in self._by_layer if i >= self.lowest_unfrozen)

    @property
    def done(self) -> bool:
        """Every layer is unfrozen."""
        return self.lowest_unfrozen <= min(self._by_layer, default=0)

    def step(self) -> None:
        """Count one training step; unfreeze the next layer when its turn has come."""
        self.steps += 1
        if self.steps % self.every == 0:
            self._apply()

    def _apply(self) -> None:
        lowest = self.lowest_unfrozen
        for layer_id, params in self._by_layer.items():
            for param in params:
                param.requires_grad_(layer_id >= lowest)

    def check_optimizer(self, optimizer: Any, model: nn.Module) -> None:
        """Raise ``ValueError`` if a parameter this schedule will unfreeze is in no group of
        ``optimizer``: unfrozen, it would compute gradients that nothing applies."""
        grouped = {id(p) for group in optimizer.param_groups for p in group["params"]}
        names = {id(p): n for n, p in model.named_parameters()}
        missing = [names[id(p)] for params in self._by_layer.values() for p in params if id(p) not in grouped]
        if missing:
            raise ValueError(
                f"{len(missing)} parameter(s) this schedule unfreezes are in no optimizer group ({', '.join(missing[:3])}"
                f"{', ...' if len(missing) > 3 else ''}): build the optimizer with frozen='include' (after the schedule "
                "froze them, or before: both work), so that each layer is in its group when unfrozen"
            )

    def state_dict(self) -> dict:
        """The step count, to resume the schedule from a checkpoint."""
        return {"steps": self.steps}

    def load_state_dict(self, state: dict) -> None:
        """Resume at ``state["steps"]`` (the layers unfrozen by then are unfrozen at once)."""
        check_number("steps", state["steps"])
        self.steps = int(state["steps"])
        self._apply()
