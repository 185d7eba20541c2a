"""Position embeddings, relative-position tables and tokens, recognised by timm's names.

They are not weight-decayed even when multi-dimensional (many models do not list them in
``no_weight_decay()``), and a token or table that a group matcher leaves out belongs to the stem.
"""

from __future__ import annotations

import functools
import re
from typing import Union

from torch import nn

from ..index import ModelIndex, as_index

#: Names (of a parameter or of the module holding it) of position embeddings, relative-position
#: tables, RoPE frequencies and tokens in timm models: ``pos_embed``, ``pos_embed1``,
#: ``relative_position_bias_table``, ``rel_pos_h``, ``rope.freqs``, ``cls_token``, ``reg_token``,
#: ``dist_token``, ``mask_token``, ``attn_pool.latent`` (a learned query token), LeViT's
#: ``attention_biases``; not ``linear_tokens`` (a token-mixing layer).
_POSITION_OR_TOKEN = re.compile(
    r"(^|_)(pos|position|positional|rel_pos|relative_position|rope|freqs)(_|\d|$)"
    r"|(^|_)(cls|reg|dist|mask|register|class|prompt)_?tokens?(_|\d|$)"
    r"|^(latent|attention_biases)$"
)
#: Layers whose weight is an ordinary weight even when the layer is named like a position
#: encoding (``pos_proj = nn.Linear``, ``pos_enc = nn.Conv2d``); an ``nn.Embedding`` named
#: ``pos_embed`` is a table.
_WEIGHT_LAYERS = (nn.Linear, nn.modules.conv._ConvNd, nn.modules.rnn.RNNBase, nn.MultiheadAttention)


def position_and_token_names(model: Union[nn.Module, ModelIndex]) -> set[str]:
    """Parameters that must not be weight-decayed although they may be multi-dimensional:
    position embeddings, relative-position tables, RoPE frequencies and tokens (cls, reg, dist,
    mask, a pooling head's latent query), found by the names timm gives them, whether or not
    the model lists them in its ``no_weight_decay()``.

    A parameter qualifies when its own name does (``pos_embed``, ``cls_token``,
    ``relative_position_bias_table``) or when the module holding it does and that module is not
    a linear, convolution or recurrent layer (``pos_embed.height_rel`` of a relative position
    embedding module, the ``weight`` of an ``nn.Embedding`` called ``pos_embed``).

    Example:
        >>> import timm, torch
        >>> with torch.device("meta"):
        ...     swin = timm.create_model("swin_tiny_patch4_window7_224", pretrained=False)
        >>> names = position_and_token_names(swin)
        >>> len(names), "layers.0.blocks.0.attn.relative_position_bias_table" in names
        (12, True)
    """
    found = as_index(model).found
    names = set()
    for name in found.names:
        owner, _, leaf = name.rpartition(".")
        if _names_position_or_token(leaf):
            names.add(name)
        elif owner and _names_position_or_token(owner.rpartition(".")[2]) and not isinstance(
            found.modules[owner], _WEIGHT_LAYERS
        ):
            names.add(name)
    return names


@functools.lru_cache(maxsize=1 << 14)
def _names_position_or_token(component: str) -> bool:
    # cached: a model repeats a few dozen component names ("weight", "qkv", "0") over and over
    return _POSITION_OR_TOKEN.search(component) is not None


def is_position_or_token(name: str, anywhere: bool = False) -> bool:
    """Does a parameter's name (its last two components; with ``anywhere``, any component) say
    position embedding, relative-position table or token, by timm's naming?"""
    parts = name.split(".")
    return any(map(_names_position_or_token, parts if anywhere else parts[-2:]))
