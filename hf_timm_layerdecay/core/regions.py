"""Per-region layer decay: ``layer_decay={"vision_model": 0.9, "text_model": 0.8}``.

A *region* is a part of a model with blocks of its own, as the transformers adapter finds them
(a tower of CLIP, LLaVA or BLIP-2; the encoder or the decoder of T5, BART, Whisper). A
:class:`~hf_timm_layerdecay.core.layer_map.LayerMap` lists them in ``regions`` with the span of
ids their blocks take. A mapping from region to decay applies each decay over *that region's own
depth*, as EVA-CLIP's ``--visual-ld`` / ``--text-ld`` do: in a region whose blocks are ids
``a + 1 .. b``, the top block gets ``d``, the first ``d ** (b - a)``, what sits below its first
block (its embeddings) ``d ** (b - a + 1)``, and what runs after its last block (a tower's final
norm, at the head's id) 1.0.

The key ``"*"`` gives the decay of every parameter outside the named regions, over the whole
model's frame (the meaning of a float ``layer_decay``). Without it, such parameters must all sit
at the head's id (CLIP's projections and ``logit_scale``), which has scale 1.0 whatever the decay;
one below the head is an error, since no decay was said for it.

Keys are matched like ``tower=``: a region's whole path (``"model.vision_tower"``) or its last
part(s) (``"vision_tower"``). A key that names no region, or several, is an error listing the
model's regions. Nested named regions: the innermost one holding a parameter decides.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Mapping, Optional

from .layer_map import LayerMap
from .scales import LayerDecayError

#: The key of a region-decay mapping that stands for every parameter outside the named regions.
REST = "*"


class RegionError(LayerDecayError):
    """A ``{region: decay}`` mapping that does not fit the model (unknown or ambiguous region, a
    parameter below the head in no named region without a ``"*"`` decay)."""


@dataclass(frozen=True)
class RegionDecay:
    """Named regions resolved on one model: ``label -> (path, span)``, plus the rest's decay.

    Attributes:
        decays: the user's mapping, ``"*"`` included.
        paths: label (the user's key) -> region path, for every key but ``"*"``.
        spans: label -> ``(a, b)``: the region's blocks are ids ``a + 1 .. b``.
    """

    decays: Mapping[str, float]
    paths: Mapping[str, str]
    spans: Mapping[str, tuple[int, int]]

    def region_of(self, canonical_name: str) -> Optional[str]:
        """The label of the innermost named region holding the parameter, or ``None``."""
        holding = [label for label, path in self.paths.items() if canonical_name.startswith(path + ".")]
        return max(holding, key=lambda label: len(self.paths[label]), default=None)

    def local_frame(self, label: str) -> tuple[int, int]:
        """``(first id, size)`` of the region's own frame: its stem, its blocks and its head."""
        a, b = self.spans[label]
        return a, b - a + 2

    def local_id(self, label: str, layer_id: int) -> int:
        """``layer_id`` counted in the region's own frame: 0 below its first block, ``b - a + 1``
        (its head) after its last.

        Example:
            >>> regions = RegionDecay({"decoder": 0.8}, {"decoder": "decoder"}, {"decoder": (2, 4)})
            >>> [regions.local_id("decoder", i) for i in range(6)]
            [0, 0, 0, 1, 2, 3]
        """
        start, size = self.local_frame(label)
        return min(max(layer_id - start, 0), size - 1)


def resolve_regions(decays: Mapping[str, float], layer_map: LayerMap, model_name: str) -> RegionDecay:
    """Match every key of ``decays`` to one region of ``layer_map`` (see the module docstring).

    Example:
        >>> layer_map = LayerMap({"text.a": 1, "vision.b": 1, "proj": 3}, 4,
        ...                      regions={"text": (0, 1), "vision": (0, 2)})
        >>> resolve_regions({"vision": 0.9, "text": 0.8}, layer_map, "Clip").spans
        {'vision': (0, 2), 'text': (0, 1)}
        >>> resolve_regions({"audio": 0.9}, layer_map, "Clip")
        Traceback (most recent call last):
        ...
        hf_timm_layerdecay.core.regions.RegionError: layer_decay names no region 'audio' of Clip; its regions (blocks' ids): 'text' (1-1), 'vision' (1-2)
    """
    regions = layer_map.regions
    if not regions:
        raise RegionError(
            f"layer_decay={dict(decays)!r} gives a decay per region, but {model_name} has no regions (towers, an encoder "
            "and a decoder: what the transformers adapter finds in multi-part models): give layer_decay as one float"
        )
    listed = ", ".join(f"{path!r} ({a + 1}-{b})" for path, (a, b) in regions.items())
    paths, spans = {}, {}
    for key in decays:
        if key == REST:
            continue
        found = [path for path in regions if path == key or path.endswith("." + key)]
        exact = [path for path in found if path == key]
        if len(found) > 1 and not exact:
            raise RegionError(f"layer_decay key {key!r} names several regions of {model_name}: {found}; give the whole "
                              "path of one")
        if not found:
            raise RegionError(f"layer_decay names no region {key!r} of {model_name}; its regions (blocks' ids): {listed}")
        paths[key] = (exact or found)[0]
        spans[key] = regions[paths[key]]
    return RegionDecay(dict(decays), paths, spans)


def region_scale_function(
    regions: RegionDecay, num_layers: int, scales: Callable[[int, float], list[float]]
) -> Callable[[int, Optional[str]], float]:
    """``(layer id, region label or None) -> scale``; ``scales(frame size, decay)`` gives one
    frame's scales (:func:`~hf_timm_layerdecay.core.scales.layer_scales` with the user's options).
    Outside every named region: the ``"*"`` decay over the whole frame, or 1.0 at the head."""
    per_region = {label: scales(regions.local_frame(label)[1], regions.decays[label]) for label in regions.paths}
    rest = scales(num_layers, regions.decays[REST]) if REST in regions.decays else None

    def scale(layer_id: int, label: Optional[str]) -> float:
        if label is not None:
            return per_region[label][regions.local_id(label, layer_id)]
        return rest[layer_id] if rest is not None else 1.0

    return scale


def unnamed_below_head(
    regions: RegionDecay, layer_map: LayerMap, names: list[str], canonical_of: Mapping[str, str]
) -> list[str]:
    """Grouped parameters in no named region and below the head: they need a ``"*"`` decay."""
    if REST in regions.decays:
        return []
    return [name for name in names
            if layer_map.ids[name] < layer_map.head_id and regions.region_of(canonical_of[name]) is None]
