"""The layer rule of the official ConvNeXt fine-tuning recipe (``optim_factory.py``)."""

from __future__ import annotations

from ..core.layer_map import LayerIdError

_NUM_MAX_LAYER = 12


def get_num_layer_for_convnext(var_name: str) -> int:
    """Layer id of a parameter of the official ConvNeXt (``downsample_layers.*``, ``stages.*``)
    or of timm's (``stem.*``, ``stages.<i>.downsample.*``, ``stages.<i>.blocks.<j>.*``).

    Written for depths 3-3-27-3 (ConvNeXt-S/B/L/XL): 14 ids. The stem is 0, stages 0 and 1
    are 1 and 2 (with their downsample layers), stage 2 takes ids 3-11, three blocks each,
    stage 3 and its downsample are 12, everything else (final norm, head) is 13.

    Compared with the original: a stage index outside 0-3 or a stage-2 block index past 26
    raises instead of failing with ``UnboundLocalError`` or silently sharing stage 3's id. On
    shallower models (ConvNeXt-T, 3-3-9-3) stage 2 takes ids 3-5 and 6-11 stay empty, as in
    the original; use ``strategy="auto"`` for a map without gaps.

    timm's names get the ids of the official ones they stand for: ``stem`` is
    ``downsample_layers.0``, ``stages.<i>.downsample`` is ``downsample_layers.<i>``,
    ``stages.<i>.blocks.<j>`` is ``stages.<i>.<j>``; ``norm_pre`` and ``head.*`` are the head.

    Example:
        >>> [get_num_layer_for_convnext(n) for n in ["downsample_layers.0.0.weight", "stages.0.2.gamma", "downsample_layers.2.1.weight", "stages.2.26.dwconv.weight", "stages.3.0.pwconv1.weight", "head.weight"]]
        [0, 1, 3, 11, 12, 13]
        >>> [get_num_layer_for_convnext(n) for n in ["stem.0.weight", "stages.0.blocks.2.gamma", "stages.2.downsample.1.weight", "stages.2.blocks.26.conv_dw.weight", "stages.3.blocks.0.mlp.fc1.weight", "head.norm.weight", "head.fc.weight"]]
        [0, 1, 3, 11, 12, 13, 13]
    """
    parts = _official_parts(var_name.split("."))
    if parts[0] == "downsample_layers":
        stage_id = _index(parts, 1, var_name)
        return {0: 0, 1: 2, 2: 3, 3: _NUM_MAX_LAYER}[stage_id]
    if parts[0] == "stages":
        stage_id = _index(parts, 1, var_name)
        block_id = _index(parts, 2, var_name)
        if stage_id in (0, 1):
            return stage_id + 1
        if stage_id == 3:
            return _NUM_MAX_LAYER
        if block_id >= 27:
            raise LayerIdError(f"{var_name!r}: the ConvNeXt rule covers stage-2 depths up to 27 blocks")
        return 3 + block_id // 3
    return _NUM_MAX_LAYER + 1


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
