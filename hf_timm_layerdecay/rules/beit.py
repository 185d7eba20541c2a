"""The ViT rule of BEiT's ``optim_factory.py`` (also used by MAE and DeiT III fine-tuning)."""

from __future__ import annotations

from ..core.layer_map import LayerIdError

#: Parameters that belong to the embedding layer (id 0): the tokens of BEiT/timm ViTs.
_TOKENS = ("cls_token", "mask_token", "pos_embed", "dist_token", "reg_token")


def get_num_layer_for_vit(var_name: str, num_max_layer: int) -> int:
    """Layer id of a ViT parameter: embeddings 0, ``blocks.i`` ``i + 1``, the rest the head.

    ``num_max_layer`` is the number of layers, ``number of blocks + 2`` (BEiT's
    ``num_layers + 2``); the head and everything after the blocks get ``num_max_layer - 1``, as
    does BEiT's shared ``rel_pos_bias``.

    Compared with the original: timm's ``dist_token``/``reg_token`` are embeddings (the
    original sent them to the head), and a block index that does not fit in
    ``num_max_layer`` or a malformed ``blocks.*`` name raises instead of overlapping the head.

    Example:
        >>> [get_num_layer_for_vit(n, 14) for n in ["cls_token", "patch_embed.proj.weight", "blocks.0.attn.qkv.weight", "blocks.11.mlp.fc2.bias", "norm.weight", "head.weight"]]
        [0, 0, 1, 12, 13, 13]
    """
    if isinstance(num_max_layer, bool) or not isinstance(num_max_layer, int) or num_max_layer < 2:
        raise LayerIdError(f"num_max_layer must be an int >= 2 (number of blocks + 2), got {num_max_layer!r}")
    if var_name in _TOKENS or var_name.startswith("patch_embed"):
        return 0
    if var_name.startswith("rel_pos_bias"):
        return num_max_layer - 1
    parts = var_name.split(".")
    if parts[0] == "blocks":
        if len(parts) < 2 or not parts[1].isdigit():
            raise LayerIdError(f"cannot read a block index from {var_name!r}; expected 'blocks.<int>.<...>'")
        layer_id = int(parts[1]) + 1
        if layer_id >= num_max_layer - 1:
            raise LayerIdError(
                f"{var_name!r} is block {layer_id - 1} but num_max_layer={num_max_layer} leaves room for "
                f"{num_max_layer - 2} blocks; pass num_max_layer = number of blocks + 2"
            )
        return layer_id
    return num_max_layer - 1
