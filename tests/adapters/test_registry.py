"""The adapter registry: an adapter of one's own is asked before the built-in ones, a recipe's
rule bound to model classes numbers them under ``strategy="auto"``, and the registry refuses
what would silently misbehave."""

from __future__ import annotations

import pytest
import timm
import torch
from torch import nn

from hf_timm_layerdecay import (
    AutoStrategy,
    RuleAdapter,
    auto_layer_decay,
    get_num_layer_for_vit,
    layer_ids,
    register_adapter,
    unregister_adapter,
)
from hf_timm_layerdecay.adapters import ModelIndex, find_adapter, index_model, registered_adapters
from hf_timm_layerdecay.core.layer_map import LayerMap


class Towers(nn.Module):
    """A model of its own: two branches the structure alone cannot order."""

    def __init__(self) -> None:
        super().__init__()
        self.left, self.right, self.out = nn.Linear(4, 4), nn.Linear(4, 4), nn.Linear(4, 2)

    def forward(self, x):
        return self.out(self.left(x) + self.right(x))


class TowersAdapter:
    """Left before right before out, counted each time it is asked whether it applies."""

    name = "towers"
    options = frozenset()

    def __init__(self) -> None:
        self.asked = 0

    def applies(self, index: ModelIndex) -> bool:
        self.asked += 1
        return isinstance(index.model, Towers)

    def layer_map(self, index: ModelIndex, options: AutoStrategy) -> LayerMap:
        order = {"left": 0, "right": 1, "out": 2}
        return LayerMap.from_ids({name: order[name.split(".")[0]] for name in index.names})

    def no_weight_decay_names(self, index: ModelIndex) -> set[str]:
        return {"left.weight"}


@pytest.fixture
def towers_adapter():
    adapter = register_adapter(TowersAdapter())
    yield adapter
    unregister_adapter("towers")


def test_an_adapter_of_ones_own_numbers_its_models_and_is_asked_once_per_call(towers_adapter):
    assert registered_adapters()[0] is towers_adapter
    model = Towers()
    towers_adapter.asked = 0
    groups = auto_layer_decay(model, lr=1.0, layer_decay=0.5, weight_decay=0.1)
    assert towers_adapter.asked == 1  # one question for the layer map and the no-weight-decay names
    by_name = {name: (g["lr"], g["weight_decay"]) for g in groups for name in g["param_names"]}
    assert by_name == {"left.weight": (0.25, 0.0), "left.bias": (0.25, 0.0), "right.weight": (0.5, 0.1),
                       "right.bias": (0.5, 0.0), "out.weight": (1.0, 0.1), "out.bias": (1.0, 0.0)}
    # an adapter is unit-tested on an index of any module; the other models are not its
    assert towers_adapter.layer_map(index_model(Towers()), AutoStrategy()).ids["right.bias"] == 1
    assert find_adapter(timm.create_model("vit_tiny_patch16_224", pretrained=False, depth=1, img_size=32)).name == "timm"


def test_an_option_the_adapter_does_not_read_is_an_error_naming_it(towers_adapter):
    with pytest.raises(ValueError, match=r"AutoStrategy\(tower='left'\) has no effect on Towers, which the towers rule"):
        auto_layer_decay(Towers(), lr=1.0, tower="left")


def test_beits_rule_bound_to_timms_vit_replaces_the_timm_adapter_for_it():
    torch.manual_seed(0)
    model = timm.create_model("vit_tiny_patch16_224", pretrained=False, depth=3, img_size=32, num_classes=4)
    by_timm = layer_ids(model)
    register_adapter(RuleAdapter("beit", lambda name: get_num_layer_for_vit(name, 5), (timm.models.VisionTransformer,),
                                 no_weight_decay=("pos_embed", "cls_token")))
    try:
        ids = layer_ids(model)
        groups = auto_layer_decay(model, lr=1.0, layer_decay=0.5)
    finally:
        unregister_adapter("beit")
    assert ids == {name: get_num_layer_for_vit(name, 5) for name in ids}
    assert ids["norm.weight"] == 4 and by_timm["norm.weight"] == 3  # BEiT's rule puts the final norm in the head
    assert layer_ids(model) == by_timm  # unregistered: timm's again
    decay_of = {name: g["weight_decay"] for g in groups for name in g["param_names"]}
    assert decay_of["pos_embed"] == decay_of["cls_token"] == 0.0


def test_the_registry_refuses_what_would_misbehave(towers_adapter):
    with pytest.raises(ValueError, match=r"an adapter named 'towers' is registered already; unregister_adapter\('towers'\)"):
        register_adapter(TowersAdapter())
    with pytest.raises(TypeError, match="is no adapter: it needs a name, options, and the methods applies"):
        register_adapter(lambda model: True)
    with pytest.raises(KeyError, match="no registered adapter named 'timm'"):
        unregister_adapter("timm")  # the built-in ones stay
