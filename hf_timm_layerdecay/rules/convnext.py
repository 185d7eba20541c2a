"""The layer rule of the official ConvNeXt fine-tuning recipe (``optim_factory.py``)."""

from __future__ import annotations

from ..core.layer_map import LayerIdError

_NUM_MAX_LAYER = 12


def get_num_layer_for_convnext(var_name: str) -> int:
    """Layer id of a parameter of the official ConvNeXt (``downsample_layers.*``, ``stages.*``).

    Written for depths 3-3-27-3 (ConvNeXt-S/B/L/XL): 14 ids. The stem is 0, stages 0 and 1
    are 1 and 2 (with their downsample layers), stage 2 takes ids 3-11, three blocks each,
    stage 3 and its downsample are 12, everything else (final norm, head) is 13.

    Compared with the original: a stage index outside 0-3 or a stage-2 block index past 26
    raises instead of failing with ``UnboundLocalError`` or silently sharing stage 3's id. On
    shallower models (ConvNeXt-T, 3-3-9-3) stage 2 takes ids 3-5 and 6-11 stay empty, as in
    the original; use ``strategy="auto"`` for a map without gaps.

    Example:
        >>> [get_num_layer_for_convnext(n) for n in ["downsample_layers.0.0.weight", "stages.0.2.gamma", "downsample_layers.2.1.weight", "stages.2.26.dwconv.weight", "stages.3.0.pwconv1.weight", "head.weight"]]
        [0, 1, 3, 11, 12, 13]
    """
    parts = var_name.split(".")
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


def _index(parts: list[str], position: int, var_name: str) -> int:
    if len(parts) <= position or not parts[position].isdigit():
        raise LayerIdError(f"cannot read an index from {var_name!r} at position {position}")
    value = int(parts[position])
    if position == 1 and value > 3:
        raise LayerIdError(f"{var_name!r}: ConvNeXt has stages 0-3, got stage {value}")
    return value
