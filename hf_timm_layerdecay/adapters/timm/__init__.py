"""Layer ids for timm models: bare, inside a user model, or as timm feature extractors.

A timm model with ``group_matcher()`` is numbered in six steps:

1. **timm's grouping.** The parameters are grouped with the model's matcher at block
   granularity (``coarse=False``; ``coarse=True`` for ``AutoStrategy(granularity="stage")``),
   exactly as timm's own helper (``timm.models._manipulate.group_with_matcher``) groups them
   (:mod:`.matching`: the same ids, one regular-expression match per name).
2. **Shared modules.** A module held at a shallow path and called from inside blocks (CoaT's
   ``crpe1``, which timm files under the stem although it first runs in ``serial_blocks1.0``)
   gets the group of the first block holding it.
3. **Unmatched parameters** are placed where they run (:func:`_place_unmatched`), not dumped
   into the head: after every matched parameter means the head (``fc_norm``, ``head.norm``);
   before, the stem; in between, the neighbouring group.
4. **Stage groups are split into blocks.** Matchers that only know stages (PVT-v2, CoAtNet,
   MaxViT, EfficientFormer, MViTv2, GCViT) get one id per block of the stage's ``blocks`` list.
5. **Blocks in run order.** Where the matcher deliberately overlaps two block lists (CaiT's
   class-attention blocks get the ids of the last self-attention blocks although they run after
   all of them), the module structure numbers the model instead.
6. **The head.** The classifier (``get_classifier()``, ``pretrained_cfg["classifier"]``) has
   the last id; the frame keeps that slot when the model has no classifier (``num_classes=0``),
   so the other layers keep their scales.

The result is never coarser than timm's map and, over the whole zoo, never goes against the
order in which a forward pass first uses the parameters where timm's does not (see
``docs/timm_coverage.md``). Models without ``group_matcher()`` (MetaFormer, PiT, CSATv2,
MobileNetV5's encoder) get the structural map (:mod:`.structural`). A user model holding one
timm model (``self.backbone = timm.create_model(...)`` plus a new head) keeps the timm model's
ids; what it registers after the timm model (a new head, a neck, a decoder) takes the head id.
transformers' ``TimmWrapperModel`` classes are such models (:func:`.identify.single_timm_model`).
timm's feature extractors (``features_only=True``) get the ids of the full model they were cut
from, rebuilt without weights on the meta device, so that their scales match it.
"""

from __future__ import annotations

from typing import Union

from torch import nn

from ...core.layer_map import LayerMap
from ..index import ModelIndex, as_index
from ..options import AutoStrategy
from .features import feature_extractor_map, is_feature_extractor
from .grouping import model_map
from .identify import classifier_names, is_timm_model, single_timm_model, summarize
from .naming import is_position_or_token, position_and_token_names
from .wrapper import listed_no_weight_decay, user_wrapper_map

__all__ = [
    "applies", "layer_map", "timm_model_map", "is_timm_model", "classifier_names",
    "no_weight_decay_names", "is_position_or_token",
]


def applies(model: Union[nn.Module, ModelIndex]) -> bool:
    """Is the model (or the model of an index) a timm model, or a user model holding exactly one
    timm model?

    Looks only at class module names, so timm is not imported for models that do not use it.
    A model that also holds a transformers model is left to the transformers adapter.
    """
    index = as_index(model)
    if is_timm_model(index.model):
        return True
    return single_timm_model(index) is not None


def layer_map(model: Union[nn.Module, ModelIndex], options: AutoStrategy = AutoStrategy()) -> LayerMap:
    """Layer ids for every parameter of a timm model or of a user model holding one (given as a
    model or as its :class:`~..index.ModelIndex`).

    Example:
        >>> import timm, torch
        >>> with torch.device("meta"):
        ...     vit = timm.create_model("vit_tiny_patch16_224", pretrained=False)
        >>> lm = layer_map(vit)
        >>> [lm.ids[n] for n in ["cls_token", "patch_embed.proj.weight", "blocks.0.attn.qkv.weight", "blocks.11.mlp.fc2.bias", "head.weight"]]
        [0, 0, 1, 12, 13]
        >>> lm.num_layers
        14
    """
    index = as_index(model)
    if is_timm_model(index.model):
        return timm_model_map(index, options.granularity)
    found = single_timm_model(index)
    if found is None:
        raise ValueError(
            f"{type(index.model).__name__} is neither a timm model nor a model holding exactly one timm model; "
            "use the structural strategy for it"
        )
    path, backbone = found
    return user_wrapper_map(index, path, backbone, timm_model_map(index.of(backbone), options.granularity))


def no_weight_decay_names(model: Union[nn.Module, ModelIndex]) -> set[str]:
    """Parameters never weight-decayed, whether or not the model lists them: position tables
    and tokens by timm's names (:func:`.naming.position_and_token_names`) and, in a model
    holding a timm model, what that timm model lists in its ``no_weight_decay()`` (the caller
    reads only the outer model's list; a user's wrapper has none).

    Example:
        >>> import timm, torch
        >>> from typing import Union

from torch import nn
        >>> with torch.device("meta"):
        ...     wrapper = nn.Sequential(timm.create_model("swinv2_tiny_window8_256", num_classes=0), nn.Linear(768, 3))
        >>> names = no_weight_decay_names(wrapper)
        >>> "0.layers.0.blocks.0.attn.cpb_mlp.0.weight" in names  # and its logit_scale, with timm >= 1.0.31
        True
    """
    index = as_index(model)
    names = position_and_token_names(index)
    if not is_timm_model(index.model):
        found = single_timm_model(index)
        if found is not None:
            names |= listed_no_weight_decay(index, *found)
    return names


def timm_model_map(model: Union[nn.Module, ModelIndex], granularity: str = "block") -> LayerMap:
    """Layer ids for a timm model (see the module docstring for the rules)."""
    index = as_index(model)
    model = index.model
    found = feature_extractor_map(index, granularity) if is_feature_extractor(model) else model_map(index, granularity)
    if len(set(found.ids.values())) < 2 and len(found.ids) > 1:
        note = (
            f"{type(model).__name__}: timm's grouping puts all {len(found.ids)} parameters "
            f"({summarize(list(found.ids))}) in one layer"
        )
        found = LayerMap(found.ids, found.num_layers, (*found.notes, note))
    return found
