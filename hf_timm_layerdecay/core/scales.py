"""From layer ids to learning-rate scales.

``layer_decay`` can be given three ways:

* a float ``d``: ``scale(i) = d ** (num_layers - 1 - i)``, so the head gets 1.0 and every layer
  below it ``d`` times the one above (BEiT, MAE, timm);
* a sequence of per-layer values, indexed by layer id (``values[i]`` is the scale of layer ``i``,
  the meaning of the original post's ``LayerDecayValueAssigner``);
* a callable ``layer_id -> scale``.

A floor ``min_scale`` applies to all three.
"""

from __future__ import annotations

import math
import numbers
from typing import Callable, Iterable, Mapping, Optional, Union

LayerDecay = Union[float, Iterable[float], Callable[[int], float]]


class LayerDecayError(ValueError):
    """``layer_decay`` (or ``min_scale``) cannot give a valid scale for every layer.

    Example:
        >>> import torch
        >>> from hf_timm_layerdecay import auto_layer_decay
        >>> auto_layer_decay(torch.nn.Linear(2, 2), lr=1e-3, layer_decay=0.0)  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        hf_timm_layerdecay.core.scales.LayerDecayError: ...
    """


class LayerDecayWarning(UserWarning):
    """The groups are built as asked, but what was asked has an effect the user likely did not
    mean (every parameter in one layer, so the decay does nothing; ids with large gaps)."""


def as_number(value: object) -> object:
    """A 0-d tensor or array (``torch.tensor(0.7)``, ``np.float32(0.7)``) as a Python number;
    anything else unchanged. Duck-typed: the core imports no framework."""
    if getattr(value, "ndim", None) == 0 and callable(getattr(value, "item", None)):
        return value.item()
    return value


def is_decay_off(layer_decay: object) -> bool:
    """True when ``layer_decay`` asks for no layer-wise decay at all (``None`` or ``1.0``)."""
    layer_decay = as_number(layer_decay)
    return layer_decay is None or (_is_number(layer_decay) and float(layer_decay) == 1.0)


def layer_scales(
    num_layers: int,
    layer_decay: LayerDecay,
    *,
    min_scale: float = 0.0,
    normalize_depth: Optional[float] = None,
    allow_decay_above_one: bool = False,
) -> list[float]:
    """Return the learning-rate scale of every layer id ``0 .. num_layers - 1``.

    Args:
        num_layers: size of the id frame (``max id + 1`` or more).
        layer_decay: a float in ``(0, 1]`` (a 0-d tensor is read as its value), a sequence of
            exactly ``num_layers`` positive values, or a callable ``id -> scale``.
        min_scale: lower bound for every scale (timm's ``min_scale``), in ``[0, 1]``: above 1
            it would lift every layer, the head included, above the base lr.
        normalize_depth: with a float decay only: ``scale(i) = d ** (D * (n - 1 - i) / (n - 1))``
            for ``D = normalize_depth``, so the stem gets ``d ** D`` on a model of any depth and
            one value of ``d`` means the same total range on a 14-layer ViT and a 52-layer ResNet.
        allow_decay_above_one: a float decay above 1 gives *lower* layers *larger* learning
            rates; that is almost always a typo (``7.5`` for ``0.75``), so it needs this opt-in.

    Example:
        >>> [round(s, 4) for s in layer_scales(4, 0.5)]
        [0.125, 0.25, 0.5, 1.0]
        >>> layer_scales(3, [1.0, 0.9, 0.8])
        [1.0, 0.9, 0.8]
        >>> layer_scales(4, 0.5, min_scale=0.3)
        [0.3, 0.3, 0.5, 1.0]
        >>> layer_scales(5, 0.5, normalize_depth=2)
        [0.25, 0.3535533905932738, 0.5, 0.7071067811865476, 1.0]
    """
    if isinstance(num_layers, bool) or not isinstance(num_layers, numbers.Integral) or num_layers < 1:
        raise LayerDecayError(f"num_layers must be a positive int, got {num_layers!r}")
    layer_decay, min_scale = as_number(layer_decay), as_number(min_scale)
    if not _is_number(min_scale) or not math.isfinite(min_scale) or min_scale < 0:
        raise LayerDecayError(f"min_scale must be a finite number >= 0, got {min_scale!r}")
    if min_scale > 1:
        raise LayerDecayError(
            f"min_scale={min_scale} is above 1: every layer, the head included, would get more than the base lr. "
            "min_scale is a floor on the scales, which run from the stem's up to 1.0 for the head: use a value in [0, 1]"
        )

    if normalize_depth is not None:
        if not _is_number(layer_decay):
            raise LayerDecayError("normalize_depth applies to a float layer_decay only")
        if not _is_number(normalize_depth) or not math.isfinite(normalize_depth) or normalize_depth <= 0:
            raise LayerDecayError(f"normalize_depth must be a number > 0, got {normalize_depth!r}")
    if _is_number(layer_decay):
        raw = _geometric(num_layers, float(layer_decay), allow_decay_above_one, normalize_depth)
    elif callable(layer_decay):
        raw = [check_scale(_call(layer_decay, i), f"layer_decay({i})") for i in range(num_layers)]
    elif isinstance(layer_decay, Mapping):
        raise LayerDecayError(
            f"layer_decay is a mapping ({type(layer_decay).__name__} with keys {list(layer_decay)[:5]}); the scales of "
            "one frame come from a float, a sequence of per-layer scales indexed by layer id (list(mapping.values()) if "
            "the keys are 0..n-1) or a callable layer_id -> scale. A {region: decay} mapping is read by "
            "auto_layer_decay (hf_timm_layerdecay.core.regions)"
        )
    elif isinstance(layer_decay, (str, bytes, set, frozenset)) or not isinstance(layer_decay, Iterable):
        raise LayerDecayError(
            f"layer_decay must be a float, a sequence of per-layer scales or a callable, got {layer_decay!r}"
        )
    else:
        raw = _from_values(num_layers, list(layer_decay))
    return [max(min_scale, scale) for scale in raw]


def check_decay_options(
    layer_decay: object,
    *,
    min_scale: float = 0.0,
    normalize_depth: Optional[float] = None,
    allow_decay_above_one: bool = False,
) -> None:
    """Raise :class:`LayerDecayError` for options that no model could turn into scales, before
    any model is seen (the Trainer's arguments, the command line): the checks of
    :func:`layer_scales`, on a two-layer frame.

    Example:
        >>> check_decay_options(0.8, min_scale=0.1)
        >>> check_decay_options(1.5)  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        hf_timm_layerdecay.core.scales.LayerDecayError: layer_decay=1.5 is above 1, ...
    """
    layer_decay = as_number(layer_decay)
    if is_decay_off(layer_decay):
        layer_decay = 1.0
    size = 2
    if callable(layer_decay) and not _is_number(layer_decay):
        size, layer_decay = 1, _unit  # the user's function is asked for the model's ids only
    elif not _is_number(layer_decay) and isinstance(layer_decay, Iterable):
        if not hasattr(layer_decay, "__len__"):
            return  # an iterator is read once, with the model's frame
        size = max(len(layer_decay), 1)  # a sequence's length is checked against the model's ids later
    layer_scales(size, layer_decay, min_scale=min_scale, normalize_depth=normalize_depth,
                 allow_decay_above_one=allow_decay_above_one)


def _geometric(
    num_layers: int, decay: float, allow_decay_above_one: bool, normalize_depth: Optional[float] = None
) -> list[float]:
    if not math.isfinite(decay) or decay <= 0:
        raise LayerDecayError(
            f"layer_decay must be > 0, got {decay!r}; typical values are 0.65-0.95 (1.0 turns decay off)"
        )
    if decay > 1 and not allow_decay_above_one:
        raise LayerDecayError(
            f"layer_decay={decay} is above 1, which gives the stem a larger learning rate than the head. "
            "Pass allow_decay_above_one=True if that is intended; typical values are 0.65-0.95"
        )
    top = num_layers - 1
    step = normalize_depth / top if normalize_depth is not None and top else 1.0
    return [decay ** ((top - i) * step) for i in range(num_layers)]


def _from_values(num_layers: int, values: list) -> list[float]:
    if len(values) != num_layers:
        fewer = len(values) < num_layers
        raise LayerDecayError(
            f"layer_decay has {len(values)} values but the model has {num_layers} layer ids (0..{num_layers - 1}); "
            "give exactly one scale per layer id (values[i] is layer i's, the head's is the last). "
            + ("Print layer_ids(model) to see the ids." if fewer else
               f"Using the first {num_layers} would give the head values[{num_layers - 1}]={values[num_layers - 1]!r}, "
               f"not the {values[-1]!r} written last: pass layer_decay[:{num_layers}] or the values for this model")
        )
    return [check_scale(values[i], f"layer_decay[{i}]") for i in range(num_layers)]


def _unit(layer_id: int) -> float:
    return 1.0


def _call(layer_decay: Callable[[int], float], layer_id: int) -> object:
    try:
        return layer_decay(layer_id)
    except Exception as exc:  # the user's function failed: say for which layer, keep the cause
        raise LayerDecayError(f"layer_decay({layer_id}) raised {type(exc).__name__}: {exc}") from exc


def check_scale(value: object, what: str) -> float:
    """``value`` as a float, or :class:`LayerDecayError` unless it is a finite number > 0."""
    value = as_number(value)
    if not _is_number(value) or not math.isfinite(value) or value <= 0:
        raise LayerDecayError(
            f"{what} = {value!r}; every scale must be a finite number > 0 "
            "(to stop a layer from training, set requires_grad=False on its parameters)"
        )
    return float(value)


def _is_number(value: object) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)
