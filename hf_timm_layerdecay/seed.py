"""The API of the original "optimizer factory" post, re-implemented and made safe.

``get_parameter_groups`` + ``LayerDecayValueAssigner`` + a layer rule is the recipe of BEiT and
ConvNeXt. Same semantics as the post; the differences are all about failing loudly instead of
training the wrong thing:

* groups come back sorted by layer id (decayed group first inside a layer), not in the order
  parameters happen to appear;
* group contents are logged at DEBUG level and carried in the groups (``name``, ``layer_id``,
  ``param_names``) for :func:`~hf_timm_layerdecay.layer_decay_report`, not printed;
* 0-dimensional parameters (scalar temperatures) are not weight-decayed, like 1-D ones;
* ``skip_list`` entries may also be module names or glob patterns;
* a rule that returns a negative or non-integer id, an assigner asked for a layer it has no
  value for, or a scale function without a layer function raise a clear error;
* wrapped models (DDP, ``torch.compile``) are seen through: the rule gets the bare names;
* every trainable parameter is checked to be in exactly one group.
"""

from __future__ import annotations

import numbers
from collections.abc import Mapping
from typing import Callable, Iterable, Optional

from torch import nn

from .adapters.walk import collector_paused
from .pipeline import find_layer_map, model_index, no_decay_names, warn_decay_effect
from .core.checks import check_number
from .core.groups import build_param_groups, check_param_groups, split_by_device_mesh
from .core.layer_map import LayerIdError, check_layer_id
from .core.weight_decay import no_weight_decay_list
from .core.scales import LayerDecayError, check_scale
from .rules.convnext import get_num_layer_for_convnext, is_convnext_name


def get_parameter_groups(
    model: nn.Module,
    weight_decay: float = 1e-5,
    skip_list: Iterable[str] = (),
    get_num_layer: Optional[Callable[[str], int]] = None,
    get_layer_scale: Optional[Callable[[int], float]] = None,
    *,
    lr: Optional[float] = None,
) -> list[dict]:
    """Parameter groups by (layer, weight decay or not), as in the post.

    Args:
        model: the model; frozen parameters are skipped.
        weight_decay: weight decay of the decayed groups.
        skip_list: names without weight decay (e.g. ``model.no_weight_decay()``), besides
            biases and parameters with at most one dimension. An entry that matches no
            parameter is warned about, unless the model's own ``no_weight_decay()`` lists it.
        get_num_layer: ``name -> layer id``; without it there are just two groups,
            ``decay`` and ``no_decay``.
        get_layer_scale: ``layer id -> lr scale``, usually ``LayerDecayValueAssigner.get_scale``.
        lr: optional base lr. Without it groups carry ``lr_scale`` (applied by timm's
            schedulers and BEiT-style loops only); with it they carry ``lr = lr * scale``.

    Example:
        >>> import numpy as np, torch
        >>> model = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Linear(2, 2))
        >>> assigner = LayerDecayValueAssigner([0.5, 1.0], get_num_layer=lambda name: int(name[0]))
        >>> groups = get_parameter_groups(model, 0.05, get_num_layer=assigner.get_layer_id, get_layer_scale=assigner.get_scale)
        >>> [(g["name"], g["lr_scale"], g["param_names"]) for g in groups]
        [('layer_0_decay', 0.5, ['0.weight']), ('layer_0_no_decay', 0.5, ['0.bias']), ('layer_1_decay', 1.0, ['1.weight']), ('layer_1_no_decay', 1.0, ['1.bias'])]
    """
    if get_layer_scale is not None and get_num_layer is None:
        raise ValueError("get_layer_scale needs get_num_layer: a scale is looked up by layer id")
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    check_number("weight_decay", weight_decay)
    check_number("lr", lr, allow_none=True, positive=True)
    with collector_paused():
        index = model_index(model)
        named = index.named
        # skip_list is usually the model's own no_weight_decay(), whose names often match nothing
        # (301 timm models): only the other entries, typed by the user, are worth a warning
        listed = no_weight_decay_list(index.inner)
        no_decay = no_decay_names(index, skip_list, use_model_list=False, expected_unused=listed, stacklevel=3)
        layer_of = None
        if get_num_layer is not None:
            layer_map = find_layer_map(index, get_num_layer)
            layer_of = layer_map.ids.__getitem__
            warn_decay_effect(layer_map, [name for name, param in named if param.requires_grad], get_num_layer, stacklevel=2)
        scale_of = None
        if get_layer_scale is not None:
            scale_of = lambda layer_id: check_scale(get_layer_scale(layer_id), f"scale of layer {layer_id}")  # noqa: E731
        groups = build_param_groups(
            named,
            weight_decay=weight_decay,
            is_no_decay=lambda name, _: name in no_decay,
            layer_of=layer_of,
            scale_of=scale_of,
            lr=lr,
        )
        groups = split_by_device_mesh(groups)
        check_param_groups(groups, model, named=named)
        return groups


class LayerDecayValueAssigner:
    """Per-layer lr scales indexed by layer id, plus the layer rule that produces the ids.

    Args:
        values: one scale per layer id, e.g. ``[decay ** (n - 1 - i) for i in range(n)]`` or the
            post's ``np.linspace(1, 0.5, 14)``.
        get_num_layer: the rule behind :meth:`get_layer_id`. By default the post's ConvNeXt rule,
            with its frame fitted to the values (``num_max_layer = len(values) - 2``: 14 values
            for ConvNeXt-S/B/L/XL, 8 for ConvNeXt-T); a name that is no ConvNeXt parameter is then
            an error, not silently the head's id. For BEiT's ViT rule pass
            ``get_num_layer=lambda name: get_num_layer_for_vit(name, len(values))``.

    Example:
        >>> assigner = LayerDecayValueAssigner([0.25, 0.5, 1.0])
        >>> assigner.get_scale(1), assigner.num_layers
        (0.5, 3)
        >>> assigner.get_scale(3)
        Traceback (most recent call last):
        ...
        hf_timm_layerdecay.core.scales.LayerDecayError: no scale for layer 3: the assigner has 3 values (layers 0..2); give one value per layer id
    """

    def __init__(self, values: Iterable[float], get_num_layer: Optional[Callable[[str], int]] = None) -> None:
        if isinstance(values, (numbers.Number, str, bytes, Mapping)) or not isinstance(values, Iterable):
            raise TypeError(
                f"LayerDecayValueAssigner takes one scale per layer id, got {values!r}; for a decay d over n ids "
                "pass [d ** (n - 1 - i) for i in range(n)]"
            )
        self.values = [check_scale(v, f"values[{i}]") for i, v in enumerate(values)]
        if not self.values:
            raise LayerDecayError("LayerDecayValueAssigner needs at least one value")
        if get_num_layer is not None and not callable(get_num_layer):
            raise TypeError(f"get_num_layer must be a callable name -> layer id, got {get_num_layer!r}")
        self.get_num_layer = get_num_layer if get_num_layer is not None else self._convnext_rule

    @property
    def num_layers(self) -> int:
        """How many layer ids have a value."""
        return len(self.values)

    def get_scale(self, layer_id: int) -> float:
        """The scale of ``layer_id``; an id without a value is an error, never ``values[-1]``."""
        layer_id = check_layer_id(f"<layer {layer_id!r}>", layer_id)
        if layer_id >= len(self.values):
            raise LayerDecayError(
                f"no scale for layer {layer_id}: the assigner has {len(self.values)} values "
                f"(layers 0..{len(self.values) - 1}); give one value per layer id"
            )
        return self.values[layer_id]

    def get_layer_id(self, var_name: str) -> int:
        """The layer id of a parameter name, from ``get_num_layer``."""
        return check_layer_id(var_name, self.get_num_layer(var_name))

    def _convnext_rule(self, var_name: str) -> int:
        """The default rule: ConvNeXt's, in the frame of the values, for ConvNeXt names only."""
        if not is_convnext_name(var_name):
            raise LayerIdError(
                f"{var_name!r} is not a ConvNeXt parameter, and LayerDecayValueAssigner without get_num_layer uses the "
                "ConvNeXt rule of the post (which would give it the head's id). Pass the rule of your model: "
                "get_num_layer=lambda name: get_num_layer_for_vit(name, len(values)) for a BEiT/timm ViT, or any "
                "callable name -> layer id"
            )
        return get_num_layer_for_convnext(var_name, num_max_layer=len(self.values) - 2)
