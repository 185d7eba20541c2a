"""The API of the original post: get_parameter_groups, LayerDecayValueAssigner, the two rules."""

import json
import logging
from pathlib import Path

import numpy as np
import pytest
import torch

from hf_timm_layerdecay import (
    LayerDecayError,
    LayerDecayValueAssigner,
    LayerIdError,
    get_num_layer_for_convnext,
    get_num_layer_for_vit,
    get_parameter_groups,
)
from models import OfficialConvNeXt

POST_TABLE = json.loads((Path(__file__).parent / "data" / "post_convnext_s_groups.json").read_text())


def post_groups(model, **kwargs):
    assigner = LayerDecayValueAssigner(np.linspace(1, 0.5, 14))
    return get_parameter_groups(
        model, weight_decay=0.5, get_num_layer=get_num_layer_for_convnext, get_layer_scale=assigner.get_scale, **kwargs
    )


def test_reproduces_the_posts_convnext_s_table_exactly():
    model = OfficialConvNeXt(depths=(3, 3, 27, 3))
    groups = post_groups(model)

    assert len(groups) == len(POST_TABLE) == 28
    assert sum(len(g["params"]) for g in groups) == sum(len(g["params"]) for g in POST_TABLE.values()) == 344
    ours = {g["name"]: g for g in groups}
    assert set(ours) == set(POST_TABLE)
    for name, expected in POST_TABLE.items():
        group = ours[name]
        assert group["param_names"] == expected["params"], name  # same names, same order
        assert group["lr_scale"] == expected["lr_scale"], name
        assert group["weight_decay"] == expected["weight_decay"], name
        assert set(group) >= {"params", "weight_decay", "lr_scale"}
        assert "lr" not in group  # the post's groups carry only lr_scale


def test_groups_are_sorted_by_layer_id_with_decay_first():
    groups = post_groups(OfficialConvNeXt(depths=(3, 3, 27, 3)))
    keys = [(g["layer_id"], g["weight_decay"] == 0) for g in groups]
    assert keys == sorted(keys)
    assert [g["layer_id"] for g in groups[:4]] == [0, 0, 1, 1]
    assert [g["name"] for g in groups[:2]] == ["layer_0_decay", "layer_0_no_decay"]


def test_groups_are_logged_at_debug_not_printed(caplog, capsys):
    with caplog.at_level(logging.DEBUG, logger="hf_timm_layerdecay"):
        post_groups(OfficialConvNeXt(depths=(1, 1, 3, 1)))
    assert capsys.readouterr().out == ""
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "group layer_13_decay" in logged and "head.weight" in logged


def test_without_a_layer_rule_there_are_two_groups():
    model = OfficialConvNeXt(depths=(1, 1, 3, 1))
    groups = get_parameter_groups(model, weight_decay=0.5)
    assert [g["name"] for g in groups] == ["decay", "no_decay"]
    assert [g["lr_scale"] for g in groups] == [1.0, 1.0]
    decay, no_decay = (set(g["param_names"]) for g in groups)
    for name, param in model.named_parameters():
        expect_no_decay = param.ndim <= 1 or name.endswith(".bias")
        assert (name in no_decay) == expect_no_decay, name
    assert "stages.0.0.gamma" in no_decay and "head.weight" in decay


def test_skip_list_and_frozen_parameters():
    model = OfficialConvNeXt(depths=(1, 1, 3, 1))
    for param in model.stages[0].parameters():
        param.requires_grad_(False)
    groups = post_groups(model, skip_list=("head.weight",))
    names = [n for g in groups for n in g["param_names"]]
    assert not any(n.startswith("stages.0.") for n in names)
    assert len(names) == len(set(names)) == sum(p.requires_grad for p in model.parameters())
    head = next(g for g in groups if "head.weight" in g["param_names"])
    assert head["weight_decay"] == 0.0 and head["name"] == "layer_13_no_decay"
    # freezing stage 0 removes its group and changes no other scale
    assert "layer_1_decay" not in {g["name"] for g in groups}
    assert {g["name"]: g["lr_scale"] for g in groups}["layer_12_decay"] == POST_TABLE["layer_12_decay"]["lr_scale"]


def test_optional_lr_gives_real_learning_rates():
    groups = post_groups(OfficialConvNeXt(depths=(1, 1, 3, 1)), lr=2e-3)
    for group in groups:
        assert "lr_scale" not in group
        assert group["lr"] == pytest.approx(2e-3 * np.linspace(1, 0.5, 14)[group["layer_id"]])


def test_wrapped_model_is_seen_through():
    model = OfficialConvNeXt(depths=(1, 1, 3, 1))
    bare = post_groups(model)
    wrapped = post_groups(torch.nn.DataParallel(model))
    assert [g["name"] for g in wrapped] == [g["name"] for g in bare]
    assert [g["param_names"] for g in wrapped] == [["module." + n for n in g["param_names"]] for g in bare]


def test_assigner_errors_are_clear():
    assigner = LayerDecayValueAssigner(np.linspace(1, 0.5, 14))
    assert assigner.num_layers == 14
    assert assigner.get_scale(13) == 0.5
    with pytest.raises(LayerDecayError, match="no scale for layer 14: the assigner has 14 values"):
        assigner.get_scale(14)
    with pytest.raises(LayerIdError, match="negative"):
        assigner.get_scale(-1)  # the post would silently return values[-1]
    with pytest.raises(LayerDecayError, match=r"values\[1\] = 0.0"):
        LayerDecayValueAssigner([1.0, 0.0])
    with pytest.raises(LayerDecayError, match="at least one value"):
        LayerDecayValueAssigner([])
    too_short = LayerDecayValueAssigner(np.linspace(1, 0.5, 10))
    with pytest.raises(LayerDecayError, match="no scale for layer 1[0-3]"):
        get_parameter_groups(
            OfficialConvNeXt(depths=(1, 1, 3, 1)), get_num_layer=get_num_layer_for_convnext, get_layer_scale=too_short.get_scale
        )


def test_rule_errors_name_the_parameter():
    model = OfficialConvNeXt(depths=(1, 1, 3, 1))
    with pytest.raises(LayerIdError, match=r"'head.weight'.*got '3'"):
        get_parameter_groups(model, get_num_layer=lambda name: "3" if name == "head.weight" else 0)
    with pytest.raises(LayerIdError, match=r"'norm.bias' is negative"):
        get_parameter_groups(model, get_num_layer=lambda name: -1 if name == "norm.bias" else 0)
    with pytest.raises(LayerIdError, match=r"must be a non-negative int, got 2.5"):
        get_parameter_groups(model, get_num_layer=lambda name: 2.5)
    with pytest.raises(ValueError, match="get_layer_scale needs get_num_layer"):
        get_parameter_groups(model, get_layer_scale=lambda layer_id: 1.0)


def test_convnext_rule():
    assert get_num_layer_for_convnext("downsample_layers.0.1.bias") == 0
    assert get_num_layer_for_convnext("stages.1.2.gamma") == 2
    assert get_num_layer_for_convnext("downsample_layers.1.0.weight") == 2
    assert [get_num_layer_for_convnext(f"stages.2.{b}.dwconv.weight") for b in (0, 2, 3, 26)] == [3, 3, 4, 11]
    assert get_num_layer_for_convnext("downsample_layers.3.1.weight") == 12
    assert get_num_layer_for_convnext("norm.weight") == 13
    with pytest.raises(LayerIdError, match="stages 0-3, got stage 4"):
        get_num_layer_for_convnext("stages.4.0.gamma")
    with pytest.raises(LayerIdError, match="block 27 needs num_max_layer >= 13"):
        get_num_layer_for_convnext("stages.2.27.gamma")
    with pytest.raises(LayerIdError, match="cannot read an index"):
        get_num_layer_for_convnext("stages.x.0.gamma")


def test_vit_rule_on_a_real_timm_vit():
    import timm

    with torch.device("meta"):
        model = timm.create_model("vit_small_patch16_224", pretrained=False, reg_tokens=4, class_token=True)
    ids = {name: get_num_layer_for_vit(name, 14) for name, _ in model.named_parameters()}
    assert ids["cls_token"] == ids["reg_token"] == ids["pos_embed"] == ids["patch_embed.proj.weight"] == 0
    assert ids["blocks.0.attn.qkv.weight"] == 1 and ids["blocks.11.mlp.fc2.bias"] == 12
    assert ids["norm.weight"] == ids["head.weight"] == 13
    assert get_num_layer_for_vit("rel_pos_bias.relative_position_bias_table", 14) == 13
    with pytest.raises(LayerIdError, match="leaves room for 10 blocks"):
        get_num_layer_for_vit("blocks.11.norm1.weight", 12)
    with pytest.raises(LayerIdError, match="cannot read a block index"):
        get_num_layer_for_vit("blocks.norm.weight", 14)
