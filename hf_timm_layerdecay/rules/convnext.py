"""The layer rule of the official ConvNeXt fine-tuning recipe (``optim_factory.py``)."""

from __future__ import annotations

from typing import Iterable

from ..core.layer_map import LayerIdError

_NUM_MAX_LAYER = 12
#: First name parts the rule knows: the official names, timm's, and the final norm and head.
CONVNEXT_PARTS = frozenset({"downsample_layers", "stages", "stem", "norm", "norm_pre", "head"})


def get_num_layer_for_convnext(var_name: str, num_max_layer: int = _NUM_MAX_LAYER) -> int:
    """Layer id of a parameter of the official ConvNeXt (``downsample_layers.*``, ``stages.*``)
    or of timm's (``stem.*``, ``stages.<i>.downsample.*``, ``stages.<i>.blocks.<j>.*``).

    Written for depths 3-3-27-3 (ConvNeXt-S/B/L/XL) with ``num_max_layer=12`` (the original's
    constant): 14 ids. The stem is 0, stages 0 and 1 are 1 and 2 (with their downsample
    layers), stage 2 takes ids 3-11, three blocks each, stage 3 and its downsample are 12,
    everything else (final norm, head) is 13. For ConvNeXt-T (3-3-9-3) the published detection
    and segmentation recipes use ``num_max_layer=6`` (stage 2 takes 3-5, stage 3 is 6, the head
    7); with 12, ids 6-11 stay empty and stages 0-2 get ``decay ** 6`` less, which the library
    warns about. :func:`convnext_num_max_layer` gives the value for a model's names.

    Compared with the original: a stage index outside 0-3, or a stage-2 block past what
    ``num_max_layer`` leaves room for, raises instead of failing with ``UnboundLocalError`` or
    silently sharing stage 3's id.

    timm's names get the ids of the official ones they stand for: ``stem`` is
    ``downsample_layers.0``, ``stages.<i>.downsample`` is ``downsample_layers.<i>``,
    ``stages.<i>.blocks.<j>`` is ``stages.<i>.<j>``; ``norm_pre`` and ``head.*`` are the head.

    Example:
        >>> [get_num_layer_for_convnext(n) for n in ["downsample_layers.0.0.weight", "stages.0.2.gamma", "downsample_layers.2.1.weight", "stages.2.26.dwconv.weight", "stages.3.0.pwconv1.weight", "head.weight"]]
        [0, 1, 3, 11, 12, 13]
        >>> [get_num_layer_for_convnext(n) for n in ["stem.0.weight", "stages.0.blocks.2.gamma", "stages.2.downsample.1.weight", "stages.2.blocks.26.conv_dw.weight", "stages.3.blocks.0.mlp.fc1.weight", "head.norm.weight", "head.fc.weight"]]
        [0, 1, 3, 11, 12, 13, 13]
        >>> [get_num_layer_for_convnext(n, num_max_layer=6) for n in ["stages.2.8.dwconv.weight", "stages.3.0.pwconv1.weight", "head.weight"]]
        [5, 6, 7]
    """
    if isinstance(num_max_layer, bool) or not isinstance(num_max_layer, int) or num_max_layer < 4:
        raise LayerIdError(
            f"num_max_layer must be an int >= 4 (stage 2 starts at id 3, stage 3 is num_max_layer), got {num_max_layer!r}"
        )
    parts = _official_parts(var_name.split("."))
    if parts[0] == "downsample_layers":
        stage_id = _index(parts, 1, var_name)
        return {0: 0, 1: 2, 2: 3, 3: num_max_layer}[stage_id]
    if parts[0] == "stages":
        stage_id = _index(parts, 1, var_name)
        block_id = _index(parts, 2, var_name)
        if stage_id in (0, 1):
            return stage_id + 1
        if stage_id == 3:
            return num_max_layer
        if 3 + block_id // 3 >= num_max_layer:
            raise LayerIdError(
                f"{var_name!r}: stage-2 block {block_id} needs num_max_layer >= {4 + block_id // 3} in the ConvNeXt rule "
                f"(it has {num_max_layer}); use convnext_num_max_layer(names) for the model's depth"
            )
        return 3 + block_id // 3
    return num_max_layer + 1


def convnext_num_max_layer(names: Iterable[str]) -> int:
    """The ``num_max_layer`` that fits a ConvNeXt's stage-2 depth (3 blocks an id): 12 for
    S/B/L/XL (27 blocks), 6 for T (9 blocks).

    Example:
        >>> convnext_num_max_layer([f"stages.2.{i}.dwconv.weight" for i in range(9)])
        6
    """
    depth = 0
    for name in names:
        parts = _official_parts(name.split("."))
        if parts[0] == "stages" and len(parts) > 2 and parts[1] == "2" and parts[2].isdigit():
            depth = max(depth, int(parts[2]) + 1)
    return 3 + -(-depth // 3) if depth else _NUM_MAX_LAYER


def is_convnext_name(var_name: str) -> bool:
    """Whether the ConvNeXt rule knows ``var_name`` (official or timm names, final norm, head)
    rather than sending it to the head because it knows nothing of it."""
    return var_name.split(".", 1)[0] in CONVNEXT_PARTS


def _official_parts(parts: list[str]) -> list[str]:
    """timm's ConvNeXt names spelled as the official ones (see :func:`get_num_layer_for_convnext`)."""
    if parts[0] == "stem":
        return ["downsample_layers", "0", *parts[1:]]
    if parts[0] == "stages" and len(parts) > 2:
        if parts[2] == "downsample":
            return ["downsample_layers", parts[1], *parts[3:]]
        if parts[2] == "blocks":
            return ["stages", parts[1], *parts[3:]]
    return parts


def _index(parts: list[str], position: int, var_name: str) -> int:
    if len(parts) <= position or not parts[position].isdigit():
        raise LayerIdError(f"cannot read an index from {var_name!r} at position {position}")
    value = int(parts[position])
    if position == 1 and value > 3:
        raise LayerIdError(f"{var_name!r}: ConvNeXt has stages 0-3, got stage {value}")
    return value
