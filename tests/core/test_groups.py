"""core/groups.py on hand-made parameters: the order and keys of ``build_param_groups``, the names
``merge_equal_groups`` gives, ``split_by_device_mesh`` on stand-in meshes, ``param_group_coverage``."""

import pytest
import timm
import torch
from torch import nn

from hf_timm_layerdecay import auto_layer_decay
from hf_timm_layerdecay.core.groups import (
    Coverage,
    ParamGroupError,
    build_param_groups,
    merge_equal_groups,
    param_group_coverage,
    split_by_device_mesh,
)

LAYERS = {"embed.weight": 0, "blocks.0.weight": 1, "blocks.0.bias": 1, "frozen.weight": 1, "head.weight": 2}
SCALES = {0: 0.25, 1: 0.5, 2: 1.0}


def named(frozen=("frozen.weight",)):
    """Parameters registered head first: the groups must come out by layer id anyway."""
    shapes = {"head.weight": (2, 4), "blocks.0.weight": (4, 4), "blocks.0.bias": (4,), "frozen.weight": (4, 4),
              "embed.weight": (4, 3)}
    params = []
    for name, shape in shapes.items():
        param = nn.Parameter(torch.zeros(shape))
        param.requires_grad_(name not in frozen)
        params.append((name, param))
    return params


def build(params=None, **kwargs):
    options = dict(weight_decay=0.05, is_no_decay=lambda n, p: p.ndim <= 1, layer_of=LAYERS.__getitem__,
                   scale_of=SCALES.__getitem__, lr=0.1)
    return build_param_groups(named() if params is None else params, **{**options, **kwargs})


def test_groups_come_by_layer_id_decay_first_with_exactly_the_documented_keys():
    params = named()
    groups = build(params)
    assert [(g["name"], g["layer_id"], g["param_names"]) for g in groups] == [
        ("layer_0_decay", 0, ["embed.weight"]),
        ("layer_1_decay", 1, ["blocks.0.weight"]),  # the frozen weight is left out
        ("layer_1_no_decay", 1, ["blocks.0.bias"]),
        ("layer_2_decay", 2, ["head.weight"]),
    ]
    assert [(g["scale"], g["lr"], g["weight_decay"]) for g in groups] == [
        (0.25, 0.025, 0.05), (0.5, 0.05, 0.05), (0.5, 0.05, 0.0), (1.0, 0.1, 0.05)
    ]
    assert all(set(g) == {"name", "layer_id", "params", "param_names", "weight_decay", "scale", "lr"} for g in groups)
    given = dict(params)
    assert all(p is given[n] for g in groups for n, p in zip(g["param_names"], g["params"]))  # the same tensors


def test_without_lr_a_group_carries_lr_scale_and_no_lr():
    groups = build(lr=None)
    assert [g["lr_scale"] for g in groups] == [0.25, 0.5, 0.5, 1.0]
    assert not any("lr" in g for g in groups)


def test_frozen_parameters_join_their_layers_groups_when_included_in_named_parameters_order():
    groups = build(include_frozen=True)
    assert groups[1]["name"] == "layer_1_decay" and groups[1]["param_names"] == ["blocks.0.weight", "frozen.weight"]


def test_without_a_layer_function_there_are_the_plain_two_groups():
    groups = build(layer_of=None, scale_of=None)
    assert [(g["name"], g["layer_id"], g["scale"], g["lr"]) for g in groups] == [
        ("decay", None, 1.0, 0.1), ("no_decay", None, 1.0, 0.1)
    ]
    assert groups[0]["param_names"] == ["head.weight", "blocks.0.weight", "embed.weight"]


def test_multipliers_name_the_group_and_sort_after_the_plain_group_of_the_layer():
    groups = build(lr_mult_of=lambda n: 2.0 if n == "blocks.0.weight" else 1.0,
                   wd_mult_of=lambda n: 0.5 if n.startswith("blocks.") else 1.0)
    by_name = {g["name"]: g for g in groups}
    assert list(by_name) == ["layer_0_decay", "layer_1_decay_lr_x2_wd_x0.5", "layer_1_no_decay", "layer_2_decay"]
    mult = by_name["layer_1_decay_lr_x2_wd_x0.5"]
    assert (mult["scale"], mult["lr"], mult["weight_decay"], mult["lr_mult"], mult["wd_mult"]) == (1.0, 0.1, 0.025, 2.0, 0.5)
    # the weight-decay multiplier is asked of decayed parameters only: the bias keeps its plain group
    assert "wd_mult" not in by_name["layer_1_no_decay"] and "lr_mult" not in by_name["layer_0_decay"]

    params = [(f"blocks.{i}.weight", nn.Parameter(torch.zeros(2, 2))) for i in range(3)]
    groups = build(params, layer_of=lambda n: 1, lr_mult_of=lambda n: {"blocks.0.weight": 3.0, "blocks.1.weight": 0.5}.get(n, 1.0))
    assert [g["name"] for g in groups] == ["layer_1_decay_lr_x0.5", "layer_1_decay", "layer_1_decay_lr_x3"]


def test_scale_function_is_asked_once_per_group_made():
    # (the docstring says "once per layer present": layer 1's decay and no-decay groups each ask)
    asked = []
    build(scale_of=lambda i: asked.append(i) or SCALES[i])
    assert asked == [2, 1, 1, 0]  # in the order the groups are first met (head first here)


def test_the_group_building_refuses_what_cannot_be_one_optimizer():
    with pytest.raises(ValueError, match="a layer scale function needs a layer id function"):
        build(layer_of=None)
    weight = nn.Parameter(torch.zeros(2, 2))
    with pytest.raises(ParamGroupError, match="parameter 'b' is the same tensor as 'a'"):
        build([("a", weight), ("b", weight)], layer_of=lambda n: 0)
    with pytest.raises(ParamGroupError, match="no trainable parameters"):
        build(named(frozen=dict(named())))


def layer_groups(scales, weight_decay=0.1, **kwargs):
    params = [(f"{chr(ord('a') + i)}.w", nn.Parameter(torch.zeros(2, 2))) for i in range(len(scales))]
    return build_param_groups(params, weight_decay=weight_decay, is_no_decay=lambda n, p: False,
                              layer_of=lambda n: ord(n[0]) - ord("a"), scale_of=scales.__getitem__, lr=1.0, **kwargs)


def test_merging_keeps_the_first_place_and_names_the_span():
    merged = merge_equal_groups(layer_groups([0.5, 1.0, 0.5]))
    assert [(g["name"], g["layer_id"], g.get("merged_layer_ids"), g["param_names"]) for g in merged] == [
        ("layers_0_2_decay", 0, (0, 2), ["a.w", "c.w"]),  # not consecutive: the ids listed
        ("layer_1_decay", 1, None, ["b.w"]),
    ]
    merged = merge_equal_groups(layer_groups([0.25, 0.25, 0.25, 1.0]))
    assert [g["name"] for g in merged] == ["layers_0-2_decay", "layer_3_decay"]


def test_merging_leaves_distinct_groups_as_they_are():
    groups = layer_groups([0.25, 0.5, 1.0])
    merged = merge_equal_groups(groups)
    assert len(merged) == 3 and all(a is b for a, b in zip(merged, groups))


def test_merged_decay_and_no_decay_of_equal_weight_decay_drop_the_kind():
    params = [("w", nn.Parameter(torch.zeros(2, 2))), ("b", nn.Parameter(torch.zeros(2)))]
    common = dict(weight_decay=0.0, is_no_decay=lambda n, p: p.ndim <= 1, lr=1.0)
    (merged,) = merge_equal_groups(build_param_groups(params, layer_of=lambda n: 3, scale_of=lambda i: 0.5, **common))
    assert (merged["name"], merged["layer_id"], merged["param_names"]) == ("layer_3", 3, ["w", "b"])
    (plain,) = merge_equal_groups(build_param_groups(params, **common))
    assert (plain["name"], plain["layer_id"]) == ("all", None)


def test_merged_names_keep_the_multiplier_suffixes():
    merged = merge_equal_groups(layer_groups([0.5, 0.5], lr_mult_of=lambda n: 2.0))
    assert [(g["name"], g["lr_mult"], g["scale"]) for g in merged] == [("layers_0-1_decay_lr_x2", 2.0, 1.0)]


def test_a_weight_decay_multiplied_to_zero_joins_the_no_decay_group():
    params = [("w", nn.Parameter(torch.zeros(2, 2))), ("b", nn.Parameter(torch.zeros(2)))]
    groups = build_param_groups(params, weight_decay=0.05, is_no_decay=lambda n, p: p.ndim <= 1, layer_of=lambda n: 0,
                                scale_of=lambda i: 1.0, lr=1.0, wd_mult_of=lambda n: 0.0)
    assert [g["name"] for g in groups] == ["layer_0_decay_wd_x0", "layer_0_no_decay"]
    (merged,) = merge_equal_groups(groups)
    assert merged["name"] == "layer_0" and merged["weight_decay"] == 0.0 and "wd_mult" not in merged


@pytest.fixture(scope="module")
def vit():
    with torch.device("meta"):
        return timm.create_model("vit_tiny_patch16_224", pretrained=False)


def test_groups_are_split_only_where_their_tensors_sit_on_several_device_meshes(vit):
    """The real case (transformers' expert + tensor parallelism, fused AdamW) runs under torchrun in
    tests/integrations/test_distributed.py; here the naming and the no-op on ordinary models."""
    groups = auto_layer_decay(vit, lr=1e-3)
    assert split_by_device_mesh(groups) is groups  # no DTensor: nothing to look at

    class Mesh:
        def __init__(self, *names):
            self.mesh_dim_names = names

    class Sharded:  # a DTensor's one attribute that matters here, a property of its class
        def __init__(self, mesh):
            self.mesh = mesh

        @property
        def device_mesh(self):
            return self.mesh

    tp, other_tp, ep = Mesh("tp"), Mesh("tp"), Mesh("efsdp", "ep")
    params = [Sharded(tp), object(), Sharded(ep), Sharded(other_tp), Sharded(tp)]
    group = {"name": "layer_2_decay", "layer_id": 2, "lr": 0.25, "weight_decay": 0.05,
             "params": params, "param_names": list("abcde")}
    parts = split_by_device_mesh([group, {**group, "name": "layer_3_decay", "params": params[:1], "param_names": ["f"]}])
    assert [(g["name"], g["param_names"]) for g in parts] == [
        ("layer_2_decay@tp0", ["a", "e"]), ("layer_2_decay@plain", ["b"]), ("layer_2_decay@efsdp,ep", ["c"]),
        ("layer_2_decay@tp1", ["d"]), ("layer_3_decay", ["f"]),  # one mesh: kept whole, name unchanged
    ]
    assert all((g["layer_id"], g["lr"], g["weight_decay"]) == (2, 0.25, 0.05) for g in parts[:4])


def test_a_mesh_without_dimension_names_is_called_mesh():
    class Unnamed:
        mesh_dim_names = None

    class Sharded:
        device_mesh = Unnamed()

    parts = split_by_device_mesh([{"name": "decay", "params": [Sharded(), object()], "param_names": ["x", "y"]}])
    assert [(g["name"], g["param_names"]) for g in parts] == [("decay@mesh", ["x"]), ("decay@plain", ["y"])]


def mlp():
    model = nn.Sequential(nn.Linear(2, 3), nn.Linear(3, 1))
    model[0].bias.requires_grad_(False)
    return model


def test_coverage_of_exact_groups_is_ok():
    model = mlp()
    coverage = param_group_coverage([{"params": [model[0].weight]}, {"params": [model[1].weight, model[1].bias]}], model)
    assert coverage == Coverage(trainable=3, missing=(), duplicates=(), foreign=())
    assert coverage.ok and coverage.problems() == []
    # a frozen parameter in a group (frozen="include") is the model's own: not a problem
    assert param_group_coverage([{"params": list(model.parameters())}], model).ok


def test_coverage_names_missing_doubled_and_foreign_tensors():
    model = mlp()
    groups = [
        {"name": "g0", "params": [model[0].weight]},
        {"name": "g1", "params": [model[0].weight, model[1].bias]},
        {"params": [torch.zeros(2, 2)]},  # unnamed: called by its index
    ]
    coverage = param_group_coverage(groups, model)
    assert coverage == Coverage(3, missing=("1.weight",), duplicates=("0.weight (in g0 and g1)",),
                                foreign=("(2, 2) tensor in group 2",))
    assert not coverage.ok
    assert coverage.problems() == [
        "1 trainable parameter(s) in no group: 1.weight",
        "1 parameter(s) in two groups: 0.weight (in g0 and g1)",
        "1 tensor(s) that are not parameters of the model: (2, 2) tensor in group 2",
    ]


def test_coverage_takes_an_optimizer_a_given_parameter_list_and_shortens_long_lists():
    model = nn.Sequential(*[nn.Linear(1, 1, bias=False) for _ in range(10)])
    optimizer = torch.optim.SGD(model[:1].parameters(), lr=0.1)
    coverage = param_group_coverage(optimizer, None, named=list(model.named_parameters()))
    assert coverage.missing == tuple(f"{i}.weight" for i in range(1, 10))
    assert coverage.problems() == [
        "9 trainable parameter(s) in no group: 1.weight, 2.weight, 3.weight, 4.weight, 5.weight, 6.weight, "
        "7.weight, 8.weight, ... (1 more)"
    ]
    with pytest.raises(TypeError, match="model must be a torch.nn.Module, got NoneType"):
        param_group_coverage(optimizer, None)
