"""The layer map: which layer every parameter belongs to.

A layer id is a small non-negative integer. By convention 0 is the stem (embeddings, patch
embedding, tokens) and ``num_layers - 1`` the head; blocks are numbered in between in the order
they run. Everything downstream (scales, groups, reports) reads only a :class:`LayerMap`, so any
way of producing one (a hand-written rule, regular expressions, a model adapter) plugs in.
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping


class LayerIdError(ValueError):
    """A rule or strategy produced a layer id that cannot be used.

    Example:
        >>> import torch
        >>> from hf_timm_layerdecay import layer_ids
        >>> layer_ids(torch.nn.Linear(2, 2), strategy=lambda name: -1)
        Traceback (most recent call last):
        ...
        hf_timm_layerdecay.core.layer_map.LayerIdError: layer id for parameter 'weight' is negative (-1); ids start at 0 (stem/embeddings) and grow towards the head
    """


def check_layer_id(name: str, layer_id: Any) -> int:
    """Return ``layer_id`` as an ``int`` or raise :class:`LayerIdError` naming the parameter.

    Integral numbers (``int``, ``numpy.int64``) are accepted; ``bool``, floats and negative
    values are not, because a silently truncated or wrapped-around id (``values[-1]``) gives a
    parameter the wrong learning rate without any error.
    """
    if isinstance(layer_id, bool) or not isinstance(layer_id, numbers.Integral):
        raise LayerIdError(
            f"layer id for parameter {name!r} must be a non-negative int, got "
            f"{layer_id!r} ({type(layer_id).__name__}); fix the rule that maps names to ids"
        )
    if layer_id < 0:
        raise LayerIdError(
            f"layer id for parameter {name!r} is negative ({layer_id}); ids start at 0 "
            "(stem/embeddings) and grow towards the head"
        )
    return int(layer_id)


@dataclass(frozen=True)
class LayerMap:
    """Layer id of every parameter of a model (trainable or frozen).

    Attributes:
        ids: parameter name (as ``model.named_parameters()`` spells it) -> layer id.
        num_layers: size of the id frame, ``max id + 1`` at least. It may be larger than the
            ids present, e.g. when a model built without a classifier keeps the head slot so
            that the other layers keep the scales they have with a head.
        notes: remarks worth showing a user (shared blocks, fallbacks), in plain words.
        regions: parts of the model with blocks of their own (towers, an encoder, a decoder), as
            ``path -> (a, b)``: the region's blocks have ids ``a + 1 .. b``. Paths are module paths
            without wrapper prefixes. Filled by the transformers adapter; a per-region
            ``layer_decay`` (:mod:`~hf_timm_layerdecay.core.regions`) reads it.

    Frozen parameters are part of the map on purpose: they fix the frame, so freezing part of
    a model never changes the scales of the parameters that still train.
    """

    ids: Mapping[str, int]
    num_layers: int
    notes: tuple[str, ...] = field(default=())
    regions: Mapping[str, tuple[int, int]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        values = self.ids.values()
        # one pass in C for the well-formed maps every strategy builds; the per-id check finds
        # and names the culprit otherwise
        if set(map(type, values)) - {int} or min(values, default=0) < 0:
            for name, layer_id in self.ids.items():
                check_layer_id(name, layer_id)
        top = max(values, default=-1)
        if self.num_layers < top + 1:
            raise LayerIdError(
                f"num_layers={self.num_layers} is smaller than the largest layer id + 1 ({top + 1})"
            )

    @classmethod
    def from_ids(cls, ids: Mapping[str, Any], notes: tuple[str, ...] = ()) -> "LayerMap":
        """Build a map whose frame is exactly ``max id + 1``, validating every id."""
        checked = {name: check_layer_id(name, layer_id) for name, layer_id in ids.items()}
        return cls(checked, max(checked.values(), default=-1) + 1, notes)

    @property
    def head_id(self) -> int:
        """The id of the last layer of the frame (the head's id)."""
        return self.num_layers - 1


#: A rule's frame may leave a slot or two empty (a head built without classifier); more is a rule
#: numbering something else than this model (ConvNeXt-S's 14 ids on ConvNeXt-T) or a typo.
MAX_EMPTY_IDS = 2


def decay_effect_problems(layer_map: LayerMap, trainable: Iterable[str], *, from_rule: bool) -> list[str]:
    """What about ``layer_map`` makes the decay differ from what a user would expect, in words:
    every trainable parameter at one id (the decay does nothing), and, for a user's rule
    (``from_rule``), more than :data:`MAX_EMPTY_IDS` ids between 0 and the top that hold no
    parameter (every id below a gap loses one factor of the decay per empty id).

    Example:
        >>> decay_effect_problems(LayerMap({"a": 0, "b": 0}, 1), ["a", "b"], from_rule=False)[0][:51]
        'all 2 trainable parameters have layer id 0: the lay'
        >>> decay_effect_problems(LayerMap.from_ids({"stem": 0, "head": 100}), ["stem", "head"], from_rule=True)[0][:40]
        'layer ids 1..99 hold no parameter (99 of'
    """
    trainable = list(trainable)
    problems = []
    trainable_ids = {layer_map.ids[name] for name in trainable}
    if len(trainable_ids) == 1:
        problems.append(
            f"all {len(trainable)} trainable parameters have layer id {next(iter(trainable_ids))}: the layer decay has "
            "no effect (every group gets the same lr). Pass a strategy that numbers them (a callable name -> id, or "
            "a {regex: id} mapping), or layer_decay=None"
        )
    if from_rule:
        top = max(layer_map.ids.values(), default=0)
        empty = sorted(set(range(top + 1)) - set(layer_map.ids.values()))
        if len(empty) > MAX_EMPTY_IDS:
            problems.append(
                f"layer ids {_spans(empty)} hold no parameter ({len(empty)} of {top + 1}): the scales still count them, "
                "so every layer below a gap gets one more factor of the decay per empty id. Number the layers without "
                "gaps, or give layer_decay as one scale per id"
            )
    return problems


def _spans(ids: list[int]) -> str:
    """``[1, 2, 3, 7]`` -> ``"1..3, 7"``."""
    spans: list[list[int]] = []
    for i in ids:
        if spans and i == spans[-1][1] + 1:
            spans[-1][1] = i
        else:
            spans.append([i, i])
    return ", ".join(f"{a}..{b}" if b > a else str(a) for a, b in spans)
