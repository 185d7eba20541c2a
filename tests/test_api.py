"""auto_layer_decay(): scales, weight decay, group layout and the errors users hit."""

import json
import warnings

import numpy as np
import pytest
import timm
import torch
from torch import nn

from hf_timm_layerdecay import (
    LayerDecayError,
    ParamGroupError,
    auto_layer_decay,
    check_param_groups,
    layer_decay_report,
    layer_ids,
)


@pytest.fixture(scope="module")
def vit():
    with torch.device("meta"):
        return timm.create_model("vit_small_patch16_224", pretrained=False)


def test_vit_groups_have_the_real_lr_of_their_layer(vit):
    groups = auto_layer_decay(vit, lr=1e-3, layer_decay=0.75, weight_decay=0.05)
    assert len(groups) == 28
    ids = layer_ids(vit)
    for group in groups:
        assert group["scale"] == pytest.approx(0.75 ** (13 - group["layer_id"]))
        assert group["lr"] == pytest.approx(1e-3 * 0.75 ** (13 - group["layer_id"]))
        assert "lr_scale" not in group  # a scaled lr plus lr_scale would be applied twice by timm
        assert {ids[n] for n in group["param_names"]} == {group["layer_id"]}
    by_name = {n: g for g in groups for n in g["param_names"]}
    assert by_name["head.weight"]["lr"] == 1e-3
    assert by_name["patch_embed.proj.weight"]["lr"] == pytest.approx(1e-3 * 0.75**13)  # 2.38e-05
    assert by_name["blocks.5.attn.qkv.weight"]["lr"] == pytest.approx(1e-3 * 0.75**7)


def test_weight_decay_exclusions(vit):
    groups = auto_layer_decay(vit, lr=1e-3)
    wd = {n: g["weight_decay"] for g in groups for n in g["param_names"]}
    assert wd["pos_embed"] == 0.0 and wd["cls_token"] == 0.0  # listed in vit.no_weight_decay()
    assert wd["blocks.0.norm1.weight"] == wd["blocks.0.attn.qkv.bias"] == 0.0
    assert wd["blocks.0.attn.qkv.weight"] == wd["head.weight"] == 0.05
    without_model_list = auto_layer_decay(vit, lr=1e-3, model_no_weight_decay=False)
    assert {n: g["weight_decay"] for g in without_model_list for n in g["param_names"]}["pos_embed"] == 0.05
    extra = auto_layer_decay(vit, lr=1e-3, no_weight_decay=["*.attn.proj.weight", "head"])
    wd = {n: g["weight_decay"] for g in extra for n in g["param_names"]}
    assert wd["blocks.3.attn.proj.weight"] == wd["head.weight"] == 0.0
    assert wd["blocks.3.attn.qkv.weight"] == 0.05
    with pytest.warns(UserWarning, match=r"match no parameter: \['typo_embed'\]"):
        auto_layer_decay(vit, lr=1e-3, no_weight_decay=["typo_embed"])


def test_scalar_parameters_get_no_weight_decay():
    model = nn.Sequential(nn.Linear(2, 2), nn.Linear(2, 2))
    model.register_parameter("temperature", nn.Parameter(torch.tensor(1.0)))
    groups = auto_layer_decay(model, lr=1.0)
    assert {n: g["weight_decay"] for g in groups for n in g["param_names"]}["temperature"] == 0.0


def test_no_decay_gives_the_plain_two_groups(vit):
    for off in (None, 1.0, 1):
        groups = auto_layer_decay(vit, lr=1e-3, layer_decay=off)
        assert [g["name"] for g in groups] == ["decay", "no_decay"]
        assert [g["lr"] for g in groups] == [1e-3, 1e-3]
        assert [g["layer_id"] for g in groups] == [None, None]


def test_sequence_callable_and_min_scale(vit):
    values = np.linspace(0.1, 1.0, 14)
    groups = auto_layer_decay(vit, lr=1.0, layer_decay=values)
    assert {g["layer_id"]: g["lr"] for g in groups} == pytest.approx(dict(enumerate(values)))
    groups = auto_layer_decay(vit, lr=1.0, layer_decay=lambda i: 1.0 / (14 - i))
    assert {g["layer_id"]: g["lr"] for g in groups} == pytest.approx({i: 1 / (14 - i) for i in range(14)})
    groups = auto_layer_decay(vit, lr=1.0, layer_decay=0.5, min_scale=0.01)
    lrs = {g["layer_id"]: g["lr"] for g in groups}
    assert lrs[0] == 0.01 and lrs[7] == 0.5**6 and lrs[13] == 1.0
    # layers 0-6 are all clamped to 0.01: one decay and one no-decay group for them, not 14
    assert [g["name"] for g in groups[:3]] == ["layers_0-6_decay", "layers_0-6_no_decay", "layer_7_decay"]
    assert groups[0]["merged_layer_ids"] == (0, 1, 2, 3, 4, 5, 6) and len(groups) == 2 + 2 * 7
    assert "blocks.5.attn.qkv.weight" in groups[0]["param_names"]


def test_groups_with_equal_hyperparameters_are_merged(vit):
    groups = auto_layer_decay(vit, lr=1.0, layer_decay=0.5, weight_decay=0.0)  # decay == no-decay groups
    assert [g["name"] for g in groups][:2] == ["layer_0", "layer_1"] and len(groups) == 14
    assert auto_layer_decay(vit, lr=1.0, layer_decay=None, weight_decay=0.0)[0]["name"] == "all"
    repeated = auto_layer_decay(vit, lr=1.0, layer_decay=[0.5, 1.0] * 7)
    assert [g["name"] for g in repeated] == [
        "layers_0_2_4_6_8_10_12_decay", "layers_0_2_4_6_8_10_12_no_decay",
        "layers_1_3_5_7_9_11_13_decay", "layers_1_3_5_7_9_11_13_no_decay",
    ]
    report = layer_decay_report(groups_min := auto_layer_decay(vit, lr=1.0, layer_decay=0.5, min_scale=0.01), vit)
    assert report.rows[0].layers == [0, 1, 2, 3, 4, 5, 6] and str(report).splitlines()[2].split()[1] == "0-6"
    assert "16 groups, 14 layers" in str(report) and report.coverage.ok and len(groups_min) == 16


def test_without_lr_groups_carry_lr_scale_and_a_warning(vit):
    with pytest.warns(UserWarning, match="carry only 'lr_scale'"):
        groups = auto_layer_decay(vit, layer_decay=0.5)
    assert all("lr" not in g and g["lr_scale"] == g["scale"] for g in groups)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        auto_layer_decay(vit, layer_decay=None)  # no decay: nothing for a scheduler to lose


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(layer_decay=0.0), "layer_decay must be > 0"),
        (dict(layer_decay=-0.7), "layer_decay must be > 0"),
        (dict(layer_decay=7.5), "above 1, which gives the stem a larger learning rate"),
        (dict(layer_decay=float("nan")), "layer_decay must be > 0"),
        (dict(layer_decay=[1.0] * 13), "layer_decay has 13 values but the model has 14 layer ids"),
        (dict(layer_decay=[1.0] * 13 + [0.0]), r"layer_decay\[13\] = 0.0"),
        (dict(layer_decay=lambda i: -1.0), r"layer_decay\(0\) = -1.0"),
        (dict(layer_decay="0.75"), "must be a float, a sequence"),
        (dict(min_scale=-1), "min_scale must be"),
    ],
)
def test_bad_layer_decay_is_an_early_clear_error(vit, kwargs, message):
    with pytest.raises(LayerDecayError, match=message):
        auto_layer_decay(vit, lr=1e-3, **kwargs)


def test_other_bad_input(vit):
    with pytest.raises(ValueError, match="lr must be a finite number > 0"):
        auto_layer_decay(vit, lr=0.0)
    with pytest.raises(ValueError, match="weight_decay must be a finite number >= 0"):
        auto_layer_decay(vit, lr=1e-3, weight_decay=-0.1)
    frozen = nn.Linear(2, 2).requires_grad_(False)
    with pytest.raises(ValueError, match="no trainable parameters"):
        auto_layer_decay(frozen, lr=1e-3)
    with pytest.raises(TypeError, match="must be a torch.nn.Module"):
        auto_layer_decay({"weight": torch.zeros(2)}, lr=1e-3)


def test_decay_above_one_needs_opt_in(vit):
    groups = auto_layer_decay(vit, lr=1.0, layer_decay=1.1, allow_decay_above_one=True)
    lrs = {g["layer_id"]: g["lr"] for g in groups}
    assert lrs[0] == pytest.approx(1.1**13) and lrs[13] == 1.0


def test_longer_values_are_refused(vit):
    # Used by index, 15 values on a 14-id ViT gave the head 0.9, not the 1.0 written last.
    with pytest.raises(LayerDecayError, match=r"has 15 values but the model has 14 layer ids.*head values\[13\]=0.9, not the 1.0"):
        auto_layer_decay(vit, lr=1.0, layer_decay=[0.5] * 13 + [0.9, 1.0])


def test_every_trainable_parameter_in_exactly_one_group_and_the_check_catches_mistakes():
    model = timm.create_model("resnet18", pretrained=False, num_classes=3)
    model.layer1.requires_grad_(False)
    groups = auto_layer_decay(model, lr=0.1)
    grouped = [p for g in groups for p in g["params"]]
    trainable = [p for p in model.parameters() if p.requires_grad]
    assert len(grouped) == len(trainable) and {id(p) for p in grouped} == {id(p) for p in trainable}
    check_param_groups(groups, model)

    missing = [dict(g, params=g["params"][1:]) if i == 0 else g for i, g in enumerate(groups)]
    with pytest.raises(ParamGroupError, match=r"1 trainable parameter\(s\) in no group: conv1.weight"):
        check_param_groups(missing, model)
    doubled = groups + [dict(groups[-1])]
    with pytest.raises(ParamGroupError, match=r"in two groups: fc.bias \(in layer_9_no_decay and layer_9_no_decay\)"):
        check_param_groups(doubled, model)
    foreign = groups + [{"params": [nn.Parameter(torch.zeros(2, 2))]}]
    with pytest.raises(ParamGroupError, match="not parameters of the model"):
        check_param_groups(foreign, model)


def test_groups_work_in_torch_optim_and_keep_names_in_the_state_dict():
    model = timm.create_model("resnet18", pretrained=False, num_classes=3)
    optimizer = torch.optim.AdamW(auto_layer_decay(model, lr=0.1), lr=0.1)
    saved = optimizer.state_dict()["param_groups"]
    assert [g["name"] for g in saved][:2] == ["layer_0_decay", "layer_0_no_decay"]
    assert saved[0]["param_names"] == ["conv1.weight"]
    json.dumps([{k: v for k, v in g.items() if k != "params"} for g in saved])  # plain data


def test_normalize_depth_gives_every_model_the_same_range():
    with torch.device("meta"):
        resnet = timm.create_model("resnet152", pretrained=False)  # 52 ids
    vit_lrs = {g["layer_id"]: g["lr"] for g in auto_layer_decay(timm.create_model("vit_tiny_patch16_224"), lr=1.0, layer_decay=0.75)}
    groups = auto_layer_decay(resnet, lr=1.0, layer_decay=0.75, normalize_depth=13)
    lrs = {g["layer_id"]: g["lr"] for g in groups}
    assert max(lrs) == 51
    assert lrs[0] == pytest.approx(vit_lrs[0]) == pytest.approx(0.75**13)  # same stem scale as the ViT
    assert lrs[51] == 1.0 and lrs[25] == pytest.approx(0.75 ** (13 * 26 / 51))
    plain = {g["layer_id"]: g["lr"] for g in auto_layer_decay(resnet, lr=1.0, layer_decay=0.75)}
    assert plain[0] == pytest.approx(0.75**51)  # 4.3e-7: the stem would practically not train
    with pytest.raises(LayerDecayError, match="normalize_depth applies to a float layer_decay only"):
        auto_layer_decay(resnet, lr=1.0, layer_decay=[1.0] * 52, normalize_depth=12)


def test_groups_hold_the_models_own_parameters_without_copies():
    model = timm.create_model("resnet18", pretrained=False, num_classes=3)
    storage = {id(p): p.data_ptr() for p in model.parameters()}
    groups = auto_layer_decay(model, lr=0.1, layer_decay=0.75, weight_decay=0.0)
    held = [p for g in groups for p in g["params"]]
    assert sorted(map(id, held)) == sorted(storage)  # the same Parameter objects, each once
    assert all(p.data_ptr() == storage[id(p)] for p in held)  # same storage: nothing was copied
    optimizer = torch.optim.SGD(groups, lr=0.1)
    model.fc.weight.grad = torch.ones_like(model.fc.weight)
    before = model.fc.weight.detach().clone()
    optimizer.step()  # the step moves the model's own tensor, at the head's lr
    assert torch.allclose(model.fc.weight, before - 0.1)


