"""Layer decay in fastai (``pip install "hf_timm_layerdecay[fastai]"``).

fastai takes parameter groups from a ``splitter`` (``model -> [[params of group 0], ...]``) and
their hyperparameters as arrays, one value per group, given to ``fit`` / ``fit_one_cycle``
(``lr_max=array``, ``wd=array``); its schedulers then scale every group's value together, so the
ratios hold at every step::

    decay = fastai_layer_decay(model, lr=1e-3, layer_decay=0.75, weight_decay=0.05)
    learn = Learner(dls, model, loss_func=CrossEntropyLossFlat(), splitter=decay.splitter)
    learn.fit_one_cycle(3, lr_max=decay.lr_max, wd=decay.wd)

The groups are in layer order, so fastai's own ``freeze_to(-n)`` trains the top groups, and
``learn.unfreeze()`` the rest, each at its layer's lr. fastai is not imported here: the splitter
and the arrays are plain Python and numpy.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

import numpy as np
from torch import nn

from ..api import auto_layer_decay
from ..config import LayerDecayConfig
from ..core.checks import check_number


@dataclass(frozen=True)
class FastaiLayerDecay:
    """The groups of one model as fastai takes them.

    Attributes:
        groups: the parameter groups (:func:`~hf_timm_layerdecay.auto_layer_decay`'s).
    """

    groups: list[dict]

    def splitter(self, model: nn.Module) -> list[list[nn.Parameter]]:
        """fastai's ``splitter``: the groups' parameters, checked to be ``model``'s."""
        held = {id(p) for p in model.parameters()}
        foreign = next((name for g in self.groups for name, p in zip(g["param_names"], g["params"]) if id(p) not in held), None)
        if foreign is not None:
            raise ValueError(
                f"the layer-decay groups hold {foreign!r}, which is not a parameter of the model fastai splits: build "
                "them with fastai_layer_decay(model, ...) on the model given to the Learner"
            )
        return [list(g["params"]) for g in self.groups]

    @property
    def lr_max(self) -> np.ndarray:
        """Each group's lr (``fit_one_cycle(lr_max=...)``, ``fit(lr=...)``)."""
        return np.array([g["lr"] for g in self.groups])

    @property
    def wd(self) -> np.ndarray:
        """Each group's weight decay (``fit_one_cycle(wd=...)``): 0 for the no-decay groups."""
        return np.array([g["weight_decay"] for g in self.groups])


def fastai_layer_decay(
    model: nn.Module, *, lr: float, config: Optional[LayerDecayConfig] = None, **options: Any
) -> FastaiLayerDecay:
    """Layer-decayed groups of ``model`` for a fastai ``Learner``.

    Args:
        model: the model given to the ``Learner``.
        lr: the head's lr; every group gets ``lr x scale`` in :attr:`FastaiLayerDecay.lr_max`.
        config, **options: as in :func:`~hf_timm_layerdecay.auto_layer_decay`.

    Example:
        >>> import torch
        >>> model = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Linear(2, 2))
        >>> decay = fastai_layer_decay(model, lr=1e-3, layer_decay=0.5, weight_decay=0.01)
        >>> decay.lr_max.tolist(), decay.wd.tolist(), [len(g) for g in decay.splitter(model)]
        ([0.0005, 0.0005, 0.001, 0.001], [0.01, 0.0, 0.01, 0.0], [1, 1, 1, 1])
    """
    check_number("lr", lr, positive=True)
    return FastaiLayerDecay(auto_layer_decay(model, config, lr=lr, **options))
