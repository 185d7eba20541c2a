"""Bad inputs: the original recipe's API (``get_parameter_groups``, ``LayerDecayValueAssigner``,
``get_num_layer_for_vit``, ``get_num_layer_for_convnext``)."""

import numpy as np
import pytest
from torch import nn

from bad_cases import Case, equals, error, frozen, groups_are, ids_of, mlp, result, run_case, set_workdir
from hf_timm_layerdecay import (
    LayerDecayError, LayerDecayValueAssigner, LayerIdError, ParamGroupError, get_num_layer_for_convnext,
    get_num_layer_for_vit, get_parameter_groups,
)

AREA = "The original recipe: get_parameter_groups, LayerDecayValueAssigner, get_num_layer_for_vit / _convnext"


def by_index(name: str) -> int:
    """The MLP's rule: ``0.*`` -> 0, ``2.*`` -> 1, ``4.*`` -> 2 (the last dotted part is stripped)."""
    return int(name.split(".")[-2]) // 2


ASSIGNER = LayerDecayValueAssigner([0.25, 0.5, 1.0], get_num_layer=by_index)


def G(**kwargs):
    return get_parameter_groups(mlp(), **kwargs)


def _layered(lr=None, wd=0.1, key_lr=(0.25, 0.5, 1.0)):
    expected = []
    for layer, index in enumerate((0, 2, 4)):
        expected.append((f"layer_{layer}_decay", key_lr[layer], wd, [f"{index}.weight"]))
        expected.append((f"layer_{layer}_no_decay", key_lr[layer], 0.0, [f"{index}.bias"]))
    return groups_are(*expected)


def _many(function, inputs):
    return [function(*args) for args in inputs]


_SCALE = "every scale must be a finite number > 0"
_NOT_INT = "must be a non-negative int"
_VIT_MAX = "num_max_layer must be an int >= 2 (number of blocks + 2)"

CASES = [
    # --- get_parameter_groups
    Case("gpg-default", "`get_parameter_groups(model)` (no rule)", lambda: G(),
         result("two groups `decay` (weight decay 1e-5) / `no_decay`, `lr_scale` 1.0, no warning",
                groups_are(("decay", 1.0, 1e-5, ["0.weight", "2.weight", "4.weight"]),
                           ("no_decay", 1.0, 0.0, ["0.bias", "2.bias", "4.bias"])))),
    Case("gpg-scale-without-rule", "`get_layer_scale=` without `get_num_layer=`", lambda: G(get_layer_scale=lambda i: 1.0),
         error(ValueError, "get_layer_scale needs get_num_layer")),
    Case("gpg-rule-negative", "`get_num_layer=lambda name: -1`", lambda: G(get_num_layer=lambda name: -1),
         error(LayerIdError, "'0.weight' is negative (-1)")),
    Case("gpg-rule-float", "`get_num_layer=lambda name: 1.0`", lambda: G(get_num_layer=lambda name: 1.0),
         error(LayerIdError, _NOT_INT, "got 1.0 (float)")),
    Case("gpg-scale-zero", "`get_layer_scale=lambda i: 0`", lambda: G(get_num_layer=by_index, get_layer_scale=lambda i: 0),
         error(LayerDecayError, "scale of layer 0 = 0", _SCALE)),
    Case("gpg-scale-nan", "`get_layer_scale=lambda i: float('nan')`",
         lambda: G(get_num_layer=by_index, get_layer_scale=lambda i: float("nan")), error(LayerDecayError, "scale of layer 0 = nan")),
    Case("gpg-assigner-short", "`LayerDecayValueAssigner([0.5, 1.0])` for a model with 3 layer ids",
         lambda: G(get_num_layer=by_index, get_layer_scale=LayerDecayValueAssigner([0.5, 1.0]).get_scale),
         error(LayerDecayError, "no scale for layer 2: the assigner has 2 values (layers 0..1)", "give one value per layer id")),
    Case("gpg-assigner", "`get_parameter_groups(model, 0.1, get_num_layer=a.get_layer_id, get_layer_scale=a.get_scale)`",
         lambda: G(weight_decay=0.1, get_num_layer=ASSIGNER.get_layer_id, get_layer_scale=ASSIGNER.get_scale),
         result("`lr_scale` 0.25 / 0.5 / 1.0, weight decay 0.1 / 0", _layered())),
    Case("gpg-assigner-lr", "the same with `lr=0.1`",
         lambda: G(weight_decay=0.1, get_num_layer=ASSIGNER.get_layer_id, get_layer_scale=ASSIGNER.get_scale, lr=0.1),
         result("real lrs 0.025 / 0.05 / 0.1", lambda groups: (_layered(key_lr=(0.025, 0.05, 0.1))(groups),
                                                               equals([False] * 6)(["lr_scale" in g for g in groups])))),
    Case("gpg-skip-string", '`skip_list="0.weight"` (a string)', lambda: G(skip_list="0.weight"),
         result("one name: `0.weight` not decayed", groups_are(("decay", 1.0, 1e-5, ["2.weight", "4.weight"]),
                                                             ("no_decay", 1.0, 0.0, ["0.weight", "0.bias", "2.bias", "4.bias"])))),
    Case("gpg-frozen", "every parameter frozen", lambda: get_parameter_groups(frozen(mlp(), 0, 2, 4)),
         error(ParamGroupError, "the model has no trainable parameters", "unfreeze some")),
    Case("gpg-wrapped", "`nn.DataParallel(model)` with a rule reading bare names",
         lambda: get_parameter_groups(nn.DataParallel(mlp()), 0.1, get_num_layer=ASSIGNER.get_layer_id, get_layer_scale=ASSIGNER.get_scale),
         result("the rule gets `0.weight`, the groups hold `module.0.weight`: `lr_scale` 0.25 / 0.5 / 1.0",
                lambda groups: equals([["module.0.weight"], ["module.0.bias"], ["module.2.weight"], ["module.2.bias"],
                                       ["module.4.weight"], ["module.4.bias"]])([g["param_names"] for g in groups]))),
    # --- LayerDecayValueAssigner
    Case("assigner-empty", "`LayerDecayValueAssigner([])`", lambda: LayerDecayValueAssigner([]),
         error(LayerDecayError, "LayerDecayValueAssigner needs at least one value")),
    Case("assigner-zero", "`LayerDecayValueAssigner([0.5, 0])`", lambda: LayerDecayValueAssigner([0.5, 0]),
         error(LayerDecayError, "values[1] = 0", _SCALE)),
    Case("assigner-nan", "`LayerDecayValueAssigner([nan])`", lambda: LayerDecayValueAssigner([float("nan")]),
         error(LayerDecayError, "values[0] = nan", _SCALE)),
    Case("assigner-str", '`LayerDecayValueAssigner(["a"])`', lambda: LayerDecayValueAssigner(["a"]),
         error(LayerDecayError, "values[0] = 'a'", _SCALE)),
    Case("assigner-bool", "`LayerDecayValueAssigner([True])`", lambda: LayerDecayValueAssigner([True]),
         error(LayerDecayError, "values[0] = True", _SCALE)),
    Case("assigner-linspace", "`LayerDecayValueAssigner(np.linspace(1, 0.5, 3))` (the post's form)",
         lambda: LayerDecayValueAssigner(np.linspace(1, 0.5, 3)).values, result("values 1.0 / 0.75 / 0.5 as floats", equals([1.0, 0.75, 0.5]))),
    Case("assigner-scale-past-end", "`assigner.get_scale(3)` with 3 values", lambda: ASSIGNER.get_scale(3),
         error(LayerDecayError, "no scale for layer 3: the assigner has 3 values (layers 0..2)")),
    Case("assigner-scale-negative", "`assigner.get_scale(-1)` (never `values[-1]`)", lambda: ASSIGNER.get_scale(-1),
         error(LayerIdError, "is negative (-1)")),
    Case("assigner-scale-float", "`assigner.get_scale(1.0)`", lambda: ASSIGNER.get_scale(1.0), error(LayerIdError, _NOT_INT, "got 1.0")),
    Case("assigner-scale-bool", "`assigner.get_scale(True)`", lambda: ASSIGNER.get_scale(True), error(LayerIdError, _NOT_INT, "got True")),
    Case("assigner-scale-str", '`assigner.get_scale("1")`', lambda: ASSIGNER.get_scale("1"), error(LayerIdError, _NOT_INT, "got '1'")),
    Case("assigner-scale-numpy", "`assigner.get_scale(np.int64(1))`", lambda: ASSIGNER.get_scale(np.int64(1)), result("0.5", equals(0.5))),
    Case("assigner-rule-negative", "`get_layer_id` with a rule returning -1",
         lambda: LayerDecayValueAssigner([1.0], get_num_layer=lambda name: -1).get_layer_id("x"),
         error(LayerIdError, "'x' is negative (-1)")),
    # --- get_num_layer_for_vit
    Case("vit-max-small", '`get_num_layer_for_vit("x", 1)`', lambda: get_num_layer_for_vit("x", 1), error(LayerIdError, _VIT_MAX, "got 1")),
    Case("vit-max-float", '`get_num_layer_for_vit("x", 14.0)`', lambda: get_num_layer_for_vit("x", 14.0), error(LayerIdError, _VIT_MAX, "got 14.0")),
    Case("vit-max-bool", '`get_num_layer_for_vit("x", True)`', lambda: get_num_layer_for_vit("x", True), error(LayerIdError, _VIT_MAX, "got True")),
    Case("vit-max-str", '`get_num_layer_for_vit("x", "14")`', lambda: get_num_layer_for_vit("x", "14"), error(LayerIdError, _VIT_MAX, "got '14'")),
    Case("vit-block-word", '`get_num_layer_for_vit("blocks.x.attn", 14)`', lambda: get_num_layer_for_vit("blocks.x.attn", 14),
         error(LayerIdError, "cannot read a block index from 'blocks.x.attn'", "expected 'blocks.<int>.<...>'")),
    Case("vit-block-bare", '`get_num_layer_for_vit("blocks", 14)`', lambda: get_num_layer_for_vit("blocks", 14),
         error(LayerIdError, "cannot read a block index from 'blocks'")),
    Case("vit-block-past-end", '`get_num_layer_for_vit("blocks.12.mlp.fc1.weight", 14)` (12 blocks: 0-11)',
         lambda: get_num_layer_for_vit("blocks.12.mlp.fc1.weight", 14),
         error(LayerIdError, "is block 12 but num_max_layer=14 leaves room for 12 blocks")),
    Case("vit-tokens", "`cls_token`, `reg_token`, `dist_token`, `pos_embed`, `patch_embed.proj.weight` with 14",
         lambda: _many(get_num_layer_for_vit, [(n, 14) for n in ("cls_token", "reg_token", "dist_token", "pos_embed", "patch_embed.proj.weight")]),
         result("all 0 (the original sent `dist_token` / `reg_token` to the head)", equals([0] * 5))),
    Case("vit-rest", "`blocks.11.norm1.weight`, `rel_pos_bias.table`, `fc_norm.weight`, `head.weight` with 14",
         lambda: _many(get_num_layer_for_vit, [(n, 14) for n in ("blocks.11.norm1.weight", "rel_pos_bias.table", "fc_norm.weight", "head.weight")]),
         result("12, 13, 13, 13", equals([12, 13, 13, 13]))),
    # --- get_num_layer_for_convnext
    Case("convnext-stage-4", '`get_num_layer_for_convnext("stages.4.0.dwconv.weight")`',
         lambda: get_num_layer_for_convnext("stages.4.0.dwconv.weight"), error(LayerIdError, "ConvNeXt has stages 0-3, got stage 4")),
    Case("convnext-downsample-4", '`"downsample_layers.4.1.weight"`', lambda: get_num_layer_for_convnext("downsample_layers.4.1.weight"),
         error(LayerIdError, "ConvNeXt has stages 0-3, got stage 4")),
    Case("convnext-deep-stage-2", '`"stages.2.27.dwconv.weight"` (a 28th block)', lambda: get_num_layer_for_convnext("stages.2.27.dwconv.weight"),
         error(LayerIdError, "stage-2 block 27 needs num_max_layer >= 13", "convnext_num_max_layer")),
    Case("convnext-index-word", '`"downsample_layers.x.weight"`', lambda: get_num_layer_for_convnext("downsample_layers.x.weight"),
         error(LayerIdError, "cannot read an index from 'downsample_layers.x.weight' at position 1")),
    Case("convnext-no-block-index", '`"stages.0"`', lambda: get_num_layer_for_convnext("stages.0"),
         error(LayerIdError, "cannot read an index from 'stages.0' at position 2")),
    Case("convnext-official-names", "official names: `downsample_layers.0/2/3`, `stages.0.2`, `stages.2.26`, `head.weight`",
         lambda: [get_num_layer_for_convnext(n) for n in ("downsample_layers.0.0.weight", "downsample_layers.2.1.weight",
                  "downsample_layers.3.1.weight", "stages.0.2.gamma", "stages.2.26.dwconv.weight", "head.weight")],
         result("0, 3, 12, 1, 11, 13", equals([0, 3, 12, 1, 11, 13]))),
    Case("convnext-timm-names", "timm names: `stem.0`, `stages.1.downsample.1`, `stages.2.blocks.5`, `stages.3.blocks.0`, `norm_pre`, `head.fc`",
         lambda: [get_num_layer_for_convnext(n) for n in ("stem.0.weight", "stages.1.downsample.1.weight", "stages.2.blocks.5.mlp.fc1.weight",
                  "stages.3.blocks.0.conv_dw.weight", "norm_pre.weight", "head.fc.weight")],
         result("the ids of the official names they stand for: 0, 2, 4, 12, 13, 13", equals([0, 2, 4, 12, 13, 13]))),
]


@pytest.mark.parametrize("case", CASES, ids=ids_of(CASES))
def test_bad_input(case, tmp_path):
    set_workdir(tmp_path)
    run_case(case)
