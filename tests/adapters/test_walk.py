"""The walk of the module tree and the model index that holds it: exactly what torch's iterators
give, made once per call."""

import gc

import pytest
import timm
import torch
from torch import nn

from hf_timm_layerdecay import auto_layer_decay, layer_ids
from hf_timm_layerdecay.adapters import walk as walk_module
from hf_timm_layerdecay.api import resolve_layer_map
from hf_timm_layerdecay.adapters.index import index_model
from hf_timm_layerdecay.adapters.walk import collector_paused, walk


class Tied(nn.Module):
    """Shared modules, a tied parameter, an own parameter and a None parameter slot."""

    def __init__(self):
        super().__init__()
        self.scale = nn.Parameter(torch.ones(()))
        self.embed = nn.Embedding(10, 4)
        shared = nn.Linear(4, 4, bias=False)
        self.blocks = nn.ModuleList([nn.Sequential(shared, nn.ReLU()), nn.Sequential(shared, nn.LayerNorm(4))])
        self.head = nn.Linear(4, 10)
        self.head.weight = self.embed.weight
        self.register_parameter("unused", None)


class OwnListing(nn.Linear):
    """A module that redefines named_parameters, as FSDP1 does: the walk must use torch's."""

    def named_parameters(self, *args, **kwargs):
        yield from super().named_parameters(*args, **kwargs)


def _torch_view(model):
    named = list(model.named_parameters())
    every = list(model.named_parameters(remove_duplicate=False))
    return named, every, list(model.named_modules(remove_duplicate=False))


@pytest.mark.parametrize(
    "build",
    [Tied, lambda: nn.Sequential(OwnListing(2, 2), Tied()), lambda: timm.create_model("coat_tiny", pretrained=False)],
    ids=["tied-and-shared", "redefined-listing", "coat-shared-crpe"],
)
def test_walk_equals_torchs_iterators(build):
    model = build()
    named, every, modules = _torch_view(model)
    found = walk(model)
    assert [(n, id(p)) for n, p in found.named] == [(n, id(p)) for n, p in named]
    assert sorted(a for paths in found.aliases.values() for a in paths) == sorted(n for n, _ in every)
    first = {id(p): n for n, p in reversed(every)}
    for name, param in every:
        assert name in found.aliases[first[id(param)]]
    assert [(p, id(m)) for p, m in found.modules.items()] == [(p, id(m)) for p, m in modules]


def test_tied_and_shared_paths_are_aliases_of_the_first_name():
    found = walk(Tied())
    assert found.names == ["scale", "embed.weight", "blocks.0.0.weight", "blocks.1.1.weight", "blocks.1.1.bias", "head.bias"]
    assert found.aliases["embed.weight"] == ["embed.weight", "head.weight"]
    assert found.aliases["blocks.0.0.weight"] == ["blocks.0.0.weight", "blocks.1.0.weight"]


@pytest.fixture
def walks(monkeypatch):
    """Every model the library walks during the test, with whether the collector was on then."""
    seen = []
    original = walk_module._walk

    def recording(model):
        seen.append((model, gc.isenabled()))
        return original(model)

    monkeypatch.setattr(walk_module, "_walk", recording)
    return seen


def test_one_walk_per_call_and_a_fresh_one_at_the_next(walks):
    model = Tied()
    auto_layer_decay(model, lr=1e-3)
    model.extra = nn.Linear(4, 4)  # a change between calls is seen by the next call
    groups = auto_layer_decay(model, lr=1e-3)
    assert [walked for walked, _ in walks] == [model, model]
    assert "extra.weight" in [n for g in groups for n in g["param_names"]]


def test_every_stage_of_a_call_works_from_its_one_index(walks):
    model = Tied()
    layer_ids(model)
    index = index_model(model)
    assert index.walk_of(model) is index.found and index.of(model) is index
    assert [walked for walked, _ in walks] == [model, model]  # one per index: layer_ids', this one
    # a submodule's walk is made once per index, and shared by the indexes of its modules
    assert index.walk_of(model.blocks) is index.of(model.blocks).walk_of(model.blocks)
    assert [walked for walked, _ in walks][2:] == [model.blocks]


def test_a_wrapped_timm_model_is_walked_once_for_every_adapter_question(walks):
    backbone = timm.create_model("vit_tiny_patch16_224", pretrained=False, depth=2, img_size=32, num_classes=0)
    model = nn.Sequential(backbone, nn.Linear(192, 3))  # the timm adapter's user-wrapper rule
    auto_layer_decay(model, lr=1e-3)
    walked = [module for module, _ in walks]
    assert walked[:2] == [model, backbone] and walked.count(model) == walked.count(backbone) == 1
    assert all(module is backbone.head for module in walked[2:])  # the classifier's own, to know its tensors


@pytest.mark.parametrize("enabled", [True, False])
def test_collector_is_paused_during_the_call_and_restored_after(walks, enabled):
    (gc.enable if enabled else gc.disable)()
    try:
        auto_layer_decay(Tied(), lr=1e-3)
        assert gc.isenabled() is enabled
        with pytest.raises(RuntimeError), collector_paused():
            raise RuntimeError("restored on errors too")
        assert gc.isenabled() is enabled
    finally:
        gc.enable()
    assert [collecting for _, collecting in walks] == [False]


def test_layer_map_lists_parameters_in_named_parameters_order():
    # The structural map numbers HRNet's parallel branches in run order; the map still lists
    # the parameters as named_parameters() does, like every other entry point.
    with torch.device("meta"):
        model = timm.create_model("hrnet_w18_small", pretrained=False)
    names = [name for name, _ in model.named_parameters()]
    assert list(resolve_layer_map(model, "structural").ids) == names
    assert list(resolve_layer_map(model).ids) == names


def test_zero3_partitioned_parameters_keep_their_weight_decay():
    """DeepSpeed's zero.Init (the Trainer's from_pretrained under ZeRO-3) leaves every parameter an
    empty (0,) tensor with its shape in ``ds_shape``: read by the shape of the tensor, every weight
    would look 1-D and lose its weight decay (seen with DeepSpeed 0.19.8: all groups ``_no_decay``)."""
    import torch

    from hf_timm_layerdecay import auto_layer_decay

    model = torch.nn.Sequential(torch.nn.Linear(8, 8), torch.nn.LayerNorm(8), torch.nn.Linear(8, 2))
    expected = [(g["name"], g["param_names"]) for g in auto_layer_decay(model, lr=1e-3, layer_decay=0.5, weight_decay=0.01)]
    for param in model.parameters():  # what zero.Init does to each parameter
        param.ds_shape = param.shape
        param.data = torch.empty(0)
    groups = auto_layer_decay(model, lr=1e-3, layer_decay=0.5, weight_decay=0.01)
    assert [(g["name"], g["param_names"]) for g in groups] == expected
    assert [g["param_names"] for g in groups if g["weight_decay"] == 0.01] == [["0.weight"], ["2.weight"]]
