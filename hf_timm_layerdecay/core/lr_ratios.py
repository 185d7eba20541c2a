"""A watchdog for lost decay: are the groups' learning rates still ``base lr x scale``?

Layer decay is built into the optimizer once; everything that touches the lrs afterwards can
undo it without an error: a scheduler with an absolute floor (``eta_min``, ``min_lr``) lifts the
lower layers to the floor, DeepSpeed's ``WarmupLR`` or a hand-written loop writes one lr into
every group, a scheduler that ignores ``lr_scale`` trains groups built without ``lr`` at one lr,
a callback or a resumed checkpoint restores other lrs. Every group this library builds carries
its ``scale``, so at any step the ratio ``lr / scale`` must be the same for all of them.
:func:`check_lr_ratios` checks it and names the cause it can see.
"""

from __future__ import annotations

import math
import warnings
import weakref
from typing import Any, Iterable, Union

from .scales import LayerDecayWarning

#: Relative difference between a group's lr and ``head lr x scale`` accepted as rounding:
#: schedulers multiply every group's lr by the same factor, in floating point.
DEFAULT_RTOL = 1e-6

# optimizer -> causes already warned about, so that a check at every step warns once per cause
_warned: "weakref.WeakKeyDictionary[Any, set[str]]" = weakref.WeakKeyDictionary()


def check_lr_ratios(
    optimizer: Union[Any, Iterable[dict]], *, rtol: float = DEFAULT_RTOL, warn: bool = True
) -> list[str]:
    """Problems with the decay in ``optimizer``'s current learning rates (empty when it holds).

    Each group with a ``scale`` (every group this library builds) should have
    ``lr = reference lr x scale``, the reference being the group with the largest scale (the
    head). Groups without a ``scale`` (added by hand) are not checked. Groups built without
    ``lr`` (carrying ``lr_scale``) all hold the optimizer's one lr until a timm scheduler applies
    the scales: check them after its first step.

    Args:
        optimizer: an optimizer (or a wrapper with ``param_groups``: accelerate's, timm's
            Lookahead) or its list of parameter groups.
        rtol: relative tolerance of the comparison.
        warn: also warn (:class:`~hf_timm_layerdecay.LayerDecayWarning`), once per optimizer and
            cause, so that it can be called at every step.

    Returns:
        One message per problem, naming the groups, their lrs and the likely cause.

    Example:
        >>> groups = [{"name": "layer_0", "scale": 0.5, "lr": 0.05}, {"name": "layer_1", "scale": 1.0, "lr": 0.1}]
        >>> check_lr_ratios(groups)
        []
        >>> for group in groups:
        ...     group["lr"] = 0.02  # what a scheduler that writes one lr into every group does
        >>> print(*check_lr_ratios(groups, warn=False))  # doctest: +ELLIPSIS
        every parameter group has the same lr 0.02: the decay is lost. Something wrote one lr into all groups: ...
    """
    groups = list(getattr(optimizer, "param_groups", optimizer))
    scaled = [g for g in groups if g.get("scale") is not None and "lr" in g]
    if len(scaled) < 2 or len({float(g["scale"]) for g in scaled}) < 2:
        return []  # one scale: nothing to keep relative
    problems = _problems(scaled, rtol)
    if warn and problems:
        seen = _warned_causes(optimizer)
        for cause, message in problems:
            if cause not in seen:
                seen.add(cause)
                warnings.warn(message, LayerDecayWarning, stacklevel=2)
    return [message for _, message in problems]


def _warned_causes(optimizer: Any) -> set[str]:
    """The causes already warned about for this optimizer; a fresh set (warn every time) for a
    list of groups or an object that takes no weak reference."""
    if not hasattr(optimizer, "param_groups"):
        return set()
    try:
        return _warned.setdefault(optimizer, set())
    except TypeError:
        return set()


def _problems(groups: list[dict], rtol: float) -> list[tuple[str, str]]:
    """``(cause, message)`` pairs for the groups whose lr is not ``reference lr x scale``."""
    reference = max(groups, key=lambda g: float(g["scale"]))
    base = float(reference["lr"]) / float(reference["scale"])
    off = [
        (g, base * float(g["scale"]))
        for g in groups
        if not math.isclose(float(g["lr"]), base * float(g["scale"]), rel_tol=rtol, abs_tol=1e-12 * abs(base))
    ]
    if not off:
        return []
    lrs = {float(g["lr"]) for g in groups}
    if len(lrs) == 1:
        lr = lrs.pop()
        cause = (
            " The groups carry only 'lr_scale', which only timm's schedulers apply: build them with "
            "auto_layer_decay(..., lr=...) so that each group has its own lr."
            if all("lr_scale" in g for g in groups)
            else ""
        )
        return [(
            "one-lr",
            f"every parameter group has the same lr {lr:.4g}: the decay is lost. Something wrote one lr into all "
            "groups: DeepSpeed's WarmupLR / WarmupDecayLR (a 'scheduler' section in its config), a scheduler or "
            f"loop that sets group['lr'] = lr for every group, or groups rebuilt without the decay.{cause}",
        )]
    floor = min(float(g["lr"]) for g in groups)
    lifted = [(g, expected) for g, expected in off if float(g["lr"]) == floor and expected < floor]
    if len(lifted) == len(off):
        return [(
            "floor",
            f"{len(lifted)} group(s) ({_names(lifted)}) are held at lr {floor:.4g}, above their decayed "
            f"{_lrs(lifted)}: an lr floor (ReduceLROnPlateau's min_lr, a clamp in a training loop) applies to every "
            "group alike and lifts the lower layers to it. Give each group a floor in proportion to its lr, or 0",
        )]
    offset = _common_offset(groups, rtol)
    if offset is not None:
        return [(
            "offset",
            f"the groups' lrs are head lr x scale plus one amount {offset:.4g} added to every group ({_names(off)} "
            f"have {_current(off)} instead of {_lrs(off)}): a scheduler with an absolute minimum (torch's "
            "CosineAnnealingLR eta_min, timm's lr_min) moves every group towards the same lr, which flattens the "
            "decay. Use eta_min=0 / lr_min=0, or a minimum relative to each group's lr (transformers' "
            "cosine_with_min_lr with min_lr_rate)",
        )]
    return [(
        "changed",
        f"{len(off)} parameter group(s) no longer have lr = head lr x scale ({_names(off)}: lr {_current(off)} "
        f"instead of {_lrs(off)}): something set their lrs after the optimizer was built (a callback or scheduler "
        "that changes groups one by one, or lrs restored from a checkpoint of another run)",
    )]


def _common_offset(groups: list[dict], rtol: float) -> "float | None":
    """``b`` where every group has ``lr = a x scale + b`` with ``b`` not 0, else ``None``: the
    pattern of a schedule ``lr_min + (lr_g - lr_min) x f(t)`` with one ``lr_min`` for all groups."""
    points = sorted({(float(g["scale"]), float(g["lr"])) for g in groups})
    (s0, l0), (s1, l1) = points[0], points[-1]
    if s1 == s0:
        return None
    slope = (l1 - l0) / (s1 - s0)
    offset = l1 - slope * s1
    tolerance = rtol * max(abs(l) for _, l in points)
    if abs(offset) <= tolerance or any(abs(l - (slope * s + offset)) > 10 * tolerance for s, l in points):
        return None
    return offset


def _names(pairs: list[tuple[dict, float]]) -> str:
    names = [str(g.get("name", "?")) for g, _ in pairs]
    return ", ".join(names[:4]) + (f", ... ({len(names)} in all)" if len(names) > 4 else "")


def _current(pairs: list[tuple[dict, float]]) -> str:
    return ", ".join(f"{float(g['lr']):.4g}" for g, _ in pairs[:4]) + (" ..." if len(pairs) > 4 else "")


def _lrs(pairs: list[tuple[dict, float]]) -> str:
    return ", ".join(f"{expected:.4g}" for _, expected in pairs[:4]) + (" ..." if len(pairs) > 4 else "")


def layer_learning_rates(optimizer: Any) -> dict[int, float]:
    """``{layer id: current lr}`` read from the optimizer's groups (those with a ``layer_id`` and no
    ``region``): the layer's own lr, without the ``lr_mult`` some of its groups carry.

    Example:
        >>> layer_learning_rates([{"layer_id": 0, "lr": 0.25}, {"layer_id": 1, "lr": 5.0, "lr_mult": 10.0}])
        {0: 0.25, 1: 0.5}
    """
    groups = getattr(optimizer, "param_groups", optimizer)
    return {
        group["layer_id"]: float(group["lr"]) / group.get("lr_mult", 1.0)
        for group in groups
        if group.get("layer_id") is not None and group.get("region") is None
    }


def layer_lr_series(optimizer: Any) -> dict[str, float]:
    """One lr per layer, named for logging: ``layer_<id>``, and ``<region>.layer_<id>`` for the
    layers of a region with a decay of its own (a layer id means a different lr in each region).

    Example:
        >>> layer_lr_series([{"layer_id": 1, "lr": 0.5, "region": "text_model"}, {"layer_id": 2, "lr": 1.0}])
        {'layer_2': 1.0, 'text_model.layer_1': 0.5}
    """
    groups = getattr(optimizer, "param_groups", optimizer)
    series = {}
    for group in groups:
        if group.get("layer_id") is not None:
            region = group.get("region")
            name = f"layer_{group['layer_id']}" if region is None else f"{region}.layer_{group['layer_id']}"
            series[name] = float(group["lr"]) / group.get("lr_mult", 1.0)
    return dict(sorted(series.items(), key=_series_order))


def _series_order(item: tuple[str, float]) -> tuple[str, int]:
    """Layers without a region first, then by region; by layer id inside each."""
    region, _, layer = item[0].rpartition("layer_")
    return region, int(layer)
