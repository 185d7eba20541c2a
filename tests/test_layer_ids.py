"""layer_ids(): the structural map of any nn.Module, name rules, patterns and wrappers."""

import warnings

import pytest
import timm
import torch
from torch import nn

from hf_timm_layerdecay import LayerDecayWarning, LayerIdError, auto_layer_decay, get_num_layer_for_vit, layer_ids
from hf_timm_layerdecay.api import resolve_layer_map
from models import OfficialConvNeXt
from oracle import assert_forward_monotone, forward_order_violations


def images(size):
    return lambda model: model(torch.randn(1, 3, size, size))


def by_id(ids):
    groups = {}
    for name, layer_id in ids.items():
        groups.setdefault(layer_id, []).append(name)
    return groups


def test_official_convnext_blocks_in_forward_order():
    model = OfficialConvNeXt(depths=(2, 2, 3, 2))
    ids = layer_ids(model)
    assert max(ids.values()) == 2 + 2 + 3 + 2 + 1  # blocks + stem + head
    assert ids["downsample_layers.0.0.weight"] == 0  # the stem
    assert ids["stages.0.0.gamma"] == 1 and ids["stages.0.1.pwconv2.bias"] == 2
    # a stage's downsample runs right before its first block and shares its id
    assert ids["downsample_layers.1.1.weight"] == ids["stages.1.0.dwconv.weight"] == 3
    assert ids["downsample_layers.3.0.weight"] == ids["stages.3.0.gamma"] == 8
    assert ids["norm.weight"] == ids["head.bias"] == 10
    assert_forward_monotone(model, ids, images(32))


@pytest.mark.parametrize(
    "name, kwargs, size, num_ids",
    [
        ("vit_tiny_patch16_224", dict(img_size=32), 32, 12 + 2),
        ("deit_tiny_distilled_patch16_224", dict(img_size=32), 32, 12 + 2),
        ("resnet18", {}, 32, 8 + 2),
        ("convnext_atto", {}, 32, 2 + 2 + 6 + 2 + 2),
        ("swin_tiny_patch4_window7_224", dict(img_size=56, window_size=7), 56, 2 + 2 + 6 + 2 + 2),
        ("efficientnet_b0", {}, 32, 16 + 2),
        ("regnety_002", {}, 32, 1 + 1 + 4 + 7 + 2),
        ("densenet121", {}, 32, 6 + 12 + 24 + 16 + 2),
        ("coat_lite_tiny", dict(img_size=32), 32, 8 + 2),
        ("pit_ti_224", dict(img_size=64), 64, 2 + 6 + 4 + 2),
    ],
)
def test_structural_map_of_timm_models_follows_the_forward_pass(name, kwargs, size, num_ids):
    model = timm.create_model(name, pretrained=False, num_classes=5, **kwargs).eval()
    ids = layer_ids(model, "structural")
    assert len(set(ids.values())) == num_ids
    assert set(ids.values()) == set(range(num_ids))  # no gaps
    if name != "coat_lite_tiny":  # CoaT's shared conv position encodings run inside the blocks
        assert_forward_monotone(model, ids, images(size))


def test_structural_vit_map_equals_the_beit_rule():
    with torch.device("meta"):
        model = timm.create_model("vit_base_patch16_224", pretrained=False)
    assert layer_ids(model, "structural") == layer_ids(model, lambda n: get_num_layer_for_vit(n, 14))


def test_coat_shared_modules_are_reported():
    with torch.device("meta"):
        model = timm.create_model("coat_lite_tiny", pretrained=False)
    notes = resolve_layer_map(model, "structural").notes
    assert any("'crpe1' is shared" in note for note in notes)


class Block(nn.Module):
    def __init__(self, dim=4):
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.fc = nn.Linear(dim, dim)

    def forward(self, x):
        return x + self.fc(self.norm(x))


class Net(nn.Module):
    def __init__(self, depth=3, shared=False):
        super().__init__()
        self.embed = nn.Linear(2, 4)
        block = Block()
        self.blocks = nn.ModuleList([block if shared else Block() for _ in range(depth)])
        self.norm = nn.LayerNorm(4)
        self.head = nn.Linear(4, 1)

    def forward(self, x):
        x = self.embed(x)
        for block in self.blocks:
            x = block(x)
        return self.head(self.norm(x))


def test_generic_module_ids():
    ids = layer_ids(Net())
    assert by_id(ids) == {
        0: ["embed.weight", "embed.bias"],
        1: ["blocks.0.norm.weight", "blocks.0.norm.bias", "blocks.0.fc.weight", "blocks.0.fc.bias"],
        2: ["blocks.1.norm.weight", "blocks.1.norm.bias", "blocks.1.fc.weight", "blocks.1.fc.bias"],
        3: ["blocks.2.norm.weight", "blocks.2.norm.bias", "blocks.2.fc.weight", "blocks.2.fc.bias"],
        4: ["norm.weight", "norm.bias", "head.weight", "head.bias"],
    }
    assert_forward_monotone(Net(), ids, lambda m: m(torch.randn(2, 2)))


def test_shared_block_is_one_id_and_noted():
    model = Net(shared=True)
    layer_map = resolve_layer_map(model)
    assert sorted(set(layer_map.ids.values())) == [0, 1, 2]
    assert any("'blocks.0' is shared" in note for note in layer_map.notes)


def test_plain_mlp_gets_one_id_per_layer_and_a_single_layer_warns():
    mlp = nn.Sequential(nn.Linear(2, 8), nn.ReLU(), nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 1))
    assert layer_ids(mlp) == {"0.weight": 0, "0.bias": 0, "2.weight": 1, "2.bias": 1, "4.weight": 2, "4.bias": 2}
    linear = nn.Linear(3, 3)
    assert layer_ids(linear) == {"weight": 0, "bias": 0}
    assert "single parameter-owning module: layer-wise decay has no effect" in resolve_layer_map(linear).notes[0]
    with pytest.warns(LayerDecayWarning, match="all 2 trainable parameters have layer id 0: the layer decay has no effect"):
        groups = auto_layer_decay(linear, lr=1e-3, layer_decay=0.5)
    assert [g["lr"] for g in groups] == [1e-3, 1e-3]


def test_frozen_parameters_keep_the_frame():
    model = Net(depth=4)
    full = layer_ids(model)
    for param in [*model.embed.parameters(), *model.blocks[:2].parameters(), *model.head.parameters()]:
        param.requires_grad_(False)
    partial = layer_ids(model)
    assert partial == {n: i for n, i in full.items() if n in partial}
    assert set(partial) == {n for n, p in model.named_parameters() if p.requires_grad}
    assert resolve_layer_map(model).num_layers == 6  # the frozen head still fixes the frame


def test_wrapped_models_get_the_same_ids():
    model = Net()
    bare = layer_ids(model)
    assert layer_ids(nn.DataParallel(model)) == {"module." + n: i for n, i in bare.items()}
    assert layer_ids(torch.compile(model)) == {"_orig_mod." + n: i for n, i in bare.items()}
    # a rule written for the bare names works on the wrapped model
    rule = lambda name: 0 if name.startswith("embed") else 1  # noqa: E731
    assert layer_ids(nn.DataParallel(torch.compile(model)), rule) == {
        "module._orig_mod." + n: rule(n) for n in bare
    }


def test_user_wrapper_with_a_new_head():
    class Finetune(nn.Module):
        def __init__(self):
            super().__init__()
            self.backbone = timm.create_model("vit_tiny_patch16_224", pretrained=False, num_classes=0, img_size=32)
            self.classifier = nn.Linear(192, 3)

        def forward(self, x):
            return self.classifier(self.backbone(x))

    model = Finetune().eval()
    ids = layer_ids(model)
    assert ids["classifier.weight"] == max(ids.values()) == 13
    assert ids["backbone.cls_token"] == 0 and ids["backbone.blocks.11.mlp.fc1.weight"] == 12
    assert_forward_monotone(model, ids, images(32))


def test_pattern_strategy():
    patterns = {r"embed\.": 0, r"blocks\.(\d+)\.": 1, r".*": "last"}
    ids = layer_ids(Net(), patterns)
    assert ids == layer_ids(Net())
    with pytest.raises(LayerIdError, match=r"2 parameter\(s\) match none of the layer patterns.*head.weight"):
        layer_ids(Net(), {r"embed|blocks|norm": 0})
    with pytest.raises(LayerIdError, match="must capture a block number"):
        layer_ids(Net(), {r"(\w+)\.": 0})
    with pytest.raises(LayerIdError, match="negative"):
        layer_ids(Net(), {r".*": -2})


def test_bad_strategies():
    with pytest.raises(ValueError, match="unknown strategy 'beit'"):
        layer_ids(Net(), "beit")
    with pytest.raises(TypeError, match="strategy must be"):
        layer_ids(Net(), 3)
    with pytest.raises(LayerIdError, match=r"layer rule .* failed on parameter 'embed.weight'"):
        layer_ids(Net(), lambda name: int(name.split(".")[1]))
    with pytest.raises(TypeError, match="must be a torch.nn.Module"):
        layer_ids("vit_base_patch16_224")


def test_oracle_catches_a_wrong_map():
    model = Net()
    ids = layer_ids(model)
    ids["blocks.2.fc.weight"] = 1
    assert forward_order_violations(model, ids, lambda m: m(torch.randn(2, 2)))


def test_tied_weights_are_one_parameter_in_one_group():
    class TiedLM(nn.Module):
        def __init__(self):
            super().__init__()
            self.embed = nn.Embedding(10, 4)
            self.blocks = nn.ModuleList(Block() for _ in range(2))
            self.lm_head = nn.Linear(4, 10, bias=False)
            self.lm_head.weight = self.embed.weight

    model = TiedLM()
    ids = layer_ids(model)
    assert "lm_head.weight" not in ids and ids["embed.weight"] == 0
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        groups = auto_layer_decay(model, lr=1.0)
    tensors = [p for g in groups for p in g["params"]]
    assert sum(p is model.embed.weight for p in tensors) == 1


def test_stage_granularity():
    from hf_timm_layerdecay import AutoStrategy

    with torch.device("meta"):
        resnet = timm.create_model("resnet50", pretrained=False)
        vit = timm.create_model("vit_tiny_patch16_224", pretrained=False)
    stages = layer_ids(resnet, AutoStrategy(granularity="stage", family_adapters=False))
    assert stages["conv1.weight"] == 0 and stages["fc.weight"] == 5
    assert {stages[n] for n in stages if n.startswith("layer3.")} == {3}
    assert len(set(layer_ids(resnet, "structural").values())) == 3 + 4 + 6 + 3 + 2
    assert layer_ids(vit, AutoStrategy(granularity="stage")) == layer_ids(vit)  # no stages: unchanged
    with pytest.raises(ValueError, match="granularity must be one of"):
        AutoStrategy(granularity="layer")
