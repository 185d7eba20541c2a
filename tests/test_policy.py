"""The policy around the decay: lr / weight-decay multipliers by name, a head multiplier, frozen
parameters kept in their groups for later unfreezing, groups added by unfreezing tools, and
SGD's momentum said out loud. Numbers per parameter, on real timm and transformers models."""

from __future__ import annotations

import warnings

import pytest
import timm
import torch
import transformers
from torch import nn

from hf_timm_layerdecay import LayerDecayConfig, auto_layer_decay, create_optimizer, layer_ids
from hf_timm_layerdecay.api import resolve_layer_map

BASE_LR, DECAY = 1e-3, 0.5


def vit(depth: int = 3) -> nn.Module:
    torch.manual_seed(0)
    return timm.create_model("vit_tiny_patch16_224", pretrained=False, depth=depth, img_size=32, num_classes=4)


def lr_of(groups: list[dict]) -> dict[str, float]:
    return {name: g["lr"] for g in groups for name in g["param_names"]}


def wd_of(groups: list[dict]) -> dict[str, float]:
    return {name: g["weight_decay"] for g in groups for name in g["param_names"]}


def decayed(model: nn.Module) -> dict[str, float]:
    """``base lr x layer scale`` of every trainable parameter."""
    layer_map = resolve_layer_map(model)
    top = layer_map.num_layers - 1
    return {name: BASE_LR * DECAY ** (top - i) for name, i in layer_ids(model).items()}


# -- lr_mult / wd_mult / head_lr_mult ---------------------------------------------------------------


def test_lr_mult_multiplies_the_layer_lr_and_the_longest_pattern_wins():
    model = vit()
    lr_mult = {"blocks.1": 2.0, "blocks.1.mlp": 3.0, "*.qkv.weight": 5.0, "head": 10.0}
    groups = auto_layer_decay(model, lr=BASE_LR, layer_decay=DECAY, lr_mult=lr_mult)
    expected = decayed(model)
    lrs = lr_of(groups)
    for name, lr in lrs.items():
        if name.startswith("blocks.1.attn.qkv.weight"):
            mult = 5.0  # "*.qkv.weight" (12 characters) is longer than "blocks.1" (8)
        elif name.startswith("blocks.1.mlp"):
            mult = 3.0
        elif name.startswith("blocks.1."):
            mult = 2.0
        elif name.endswith("qkv.weight"):
            mult = 5.0
        elif name.startswith("head."):
            mult = 10.0
        else:
            mult = 1.0
        assert lr == pytest.approx(expected[name] * mult, rel=1e-12), name
    assert lrs["head.weight"] == pytest.approx(BASE_LR * 10)
    by_name = {g["name"]: g for g in groups}
    assert by_name["layer_2_decay_lr_x2"]["lr_mult"] == 2.0 and by_name["layer_2_decay_lr_x2"]["scale"] == 2 * DECAY ** 2
    assert "lr_mult" not in by_name["layer_2_no_decay"] if "layer_2_no_decay" in by_name else True
    # a real optimizer and a torch scheduler keep every ratio
    optimizer = torch.optim.AdamW(groups, lr=BASE_LR)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 0.1)
    optimizer.step()
    scheduler.step()
    assert lr_of(optimizer.param_groups) == pytest.approx({n: 0.1 * lr for n, lr in lrs.items()}, rel=1e-12)


def test_equal_lengths_are_decided_alphabetically_not_by_dict_order():
    model = vit()
    one = lr_of(auto_layer_decay(model, lr=BASE_LR, layer_decay=DECAY, lr_mult={"blocks.0": 2.0, "*.0.norm1*": 3.0}))
    two = lr_of(auto_layer_decay(model, lr=BASE_LR, layer_decay=DECAY, lr_mult={"*.0.norm1*": 3.0, "blocks.0": 2.0}))
    assert one == two
    expected = decayed(model)
    # "*.0.norm1*" (10 characters) is longer than "blocks.0" (8): it wins
    assert one["blocks.0.norm1.weight"] == pytest.approx(expected["blocks.0.norm1.weight"] * 3.0)
    tie = {"blocks.0.mlp": 2.0, "*0.mlp.fc1*": 3.0}  # 12 and 11: the longer wins
    assert lr_of(auto_layer_decay(model, lr=BASE_LR, layer_decay=DECAY, lr_mult=tie))["blocks.0.mlp.fc1.weight"] == \
        pytest.approx(expected["blocks.0.mlp.fc1.weight"] * 2.0)
    same_length = {"blocks.0.mlp": 2.0, "*.0.mlp.fc1*": 3.0}  # 12 and 12: "*" sorts before "b"
    assert lr_of(auto_layer_decay(model, lr=BASE_LR, layer_decay=DECAY, lr_mult=same_length))["blocks.0.mlp.fc1.weight"] == \
        pytest.approx(expected["blocks.0.mlp.fc1.weight"] * 3.0)


def test_wd_mult_changes_only_weight_decayed_parameters_and_a_zero_joins_the_no_decay_group():
    model = vit()
    plain = auto_layer_decay(model, lr=BASE_LR, layer_decay=DECAY, weight_decay=0.1)
    groups = auto_layer_decay(model, lr=BASE_LR, layer_decay=DECAY, weight_decay=0.1,
                              wd_mult={"*.qkv.weight": 0.0, "blocks.0.mlp": 0.5})
    wd = wd_of(groups)
    for name, value in wd_of(plain).items():
        if value and name.endswith("qkv.weight"):
            assert wd[name] == 0.0
        elif value and name.startswith("blocks.0.mlp"):
            assert wd[name] == pytest.approx(0.05)
        else:
            assert wd[name] == value, name
    assert lr_of(groups) == lr_of(plain)
    # qkv.weight without weight decay has the hyperparameters of its layer's no-decay group: merged
    qkv_group = next(g for g in groups if "blocks.1.attn.qkv.weight" in g["param_names"])
    assert "blocks.1.attn.qkv.bias" in qkv_group["param_names"] and qkv_group["name"] == "layer_2"
    assert len(groups) == len(plain) + 1  # only blocks.0.mlp's halved weight decay is a group of its own


def test_unmatched_multiplier_patterns_are_visible_warnings():
    model = vit()
    with pytest.warns(UserWarning, match=r"lr_mult entries match no trainable parameter: \['decoder'\]"):
        auto_layer_decay(model, lr=BASE_LR, lr_mult={"decoder": 2.0, "head": 2.0})
    # norms are never weight-decayed: a wd_mult on them changes nothing, and says so
    with pytest.warns(UserWarning, match=r"wd_mult entries match no trainable weight-decayed parameter: \['\*.norm1.weight'\]"):
        auto_layer_decay(model, lr=BASE_LR, wd_mult={"*.norm1.weight": 0.0})


def test_head_lr_mult_finds_the_head_by_id_on_clip():
    config = transformers.CLIPConfig(
        text_config=dict(vocab_size=99, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                         intermediate_size=37, max_position_embeddings=16),
        vision_config=dict(image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=3, num_attention_heads=2,
                           intermediate_size=37),
        projection_dim=16,
    )
    torch.manual_seed(0)
    model = transformers.CLIPModel(config)
    ids = layer_ids(model)
    head = max(ids.values())
    head_names = {n for n, i in ids.items() if i == head}
    assert {"logit_scale", "visual_projection.weight", "text_projection.weight"} <= head_names
    groups = auto_layer_decay(model, lr=BASE_LR, layer_decay=DECAY, head_lr_mult=20, lr_mult={"text_model": 0.5})
    expected = decayed(model)
    for name, lr in lr_of(groups).items():
        mult = (20.0 if name in head_names else 1.0) * (0.5 if name.startswith("text_model.") else 1.0)
        assert lr == pytest.approx(expected[name] * mult, rel=1e-12), name
    # with the decay off the head still gets its multiplier
    flat = lr_of(auto_layer_decay(model, lr=BASE_LR, layer_decay=None, head_lr_mult=20))
    assert {n for n, lr in flat.items() if lr == pytest.approx(20 * BASE_LR)} == head_names
    assert {lr for n, lr in flat.items() if n not in head_names} == {BASE_LR}


@pytest.mark.filterwarnings("ignore:`is_gradient_checkpointing` is deprecated:FutureWarning")
def test_lora_b_multiplier_on_a_peft_llama():
    peft = pytest.importorskip("peft")
    torch.manual_seed(0)
    base = transformers.LlamaForCausalLM(transformers.LlamaConfig(
        vocab_size=99, hidden_size=32, intermediate_size=37, num_hidden_layers=3, num_attention_heads=2,
        num_key_value_heads=1, max_position_embeddings=32))
    model = peft.get_peft_model(base, peft.LoraConfig(r=2, target_modules=["q_proj", "v_proj"]))
    groups = auto_layer_decay(model, lr=BASE_LR, layer_decay=DECAY, lr_mult={"*.lora_B.*": 16.0})
    expected = decayed(model)
    lrs = lr_of(groups)
    assert len(lrs) == 3 * 2 * 2
    for name, lr in lrs.items():
        assert lr == pytest.approx(expected[name] * (16.0 if ".lora_B." in name else 1.0), rel=1e-12), name
    block = {int(n.split(".layers.")[1].split(".")[0]) for n in lrs}
    assert block == {0, 1, 2}


# -- frozen parameters --------------------------------------------------------------------------------


def _freeze(module: nn.Module) -> list[str]:
    for param in module.parameters():
        param.requires_grad_(False)
    return [n for n, _ in module.named_parameters()]


def test_frozen_include_trains_an_unfrozen_block_at_its_layer_lr():
    model = vit()
    _freeze(model.blocks[0])
    optimizer = create_optimizer(model, "adamw", lr=BASE_LR, layer_decay=DECAY, weight_decay=0.0, frozen="include")
    grouped = {n for g in optimizer.param_groups for n in g["param_names"]}
    assert {f"blocks.0.{n}" for n, _ in model.blocks[0].named_parameters()} <= grouped
    assert len(grouped) == len(list(model.parameters()))
    x = torch.randn(2, 3, 32, 32)
    before = model.blocks[0].mlp.fc1.weight.detach().clone()
    model(x).sum().backward()
    optimizer.step()
    optimizer.zero_grad()
    assert torch.equal(model.blocks[0].mlp.fc1.weight, before)  # frozen: no gradient, no step
    for param in model.blocks[0].parameters():
        param.requires_grad_(True)
    model(x).sum().backward()
    optimizer.step()
    moved = (model.blocks[0].mlp.fc1.weight - before).abs()
    layer_lr = BASE_LR * DECAY ** (resolve_layer_map(model).num_layers - 1 - 1)  # blocks.0 is layer 1
    # AdamW's first step for a tensor moves each element by lr (|m / sqrt(v)| = 1), no weight decay
    assert moved.max().item() == pytest.approx(layer_lr, rel=1e-3)
    assert moved.median().item() == pytest.approx(layer_lr, rel=1e-2)


def test_frozen_skip_leaves_frozen_parameters_out():
    model = vit()
    frozen = {f"blocks.0.{n}" for n in _freeze(model.blocks[0])}
    grouped = {n for g in auto_layer_decay(model, lr=BASE_LR) for n in g["param_names"]}
    assert not frozen & grouped and len(grouped) == sum(p.requires_grad for p in model.parameters())


def test_frozen_include_on_a_fully_frozen_model_builds_the_groups():
    model = vit()
    _freeze(model)
    with pytest.raises(ValueError, match="no trainable parameters"):
        auto_layer_decay(model, lr=BASE_LR)
    groups = auto_layer_decay(model, lr=BASE_LR, frozen="include")
    assert sum(len(g["params"]) for g in groups) == len(list(model.parameters()))


# -- groups added later --------------------------------------------------------------------------------


def test_add_param_group_without_names_keeps_a_named_state_dict():
    model = vit()
    _freeze(model.blocks[0])
    optimizer = create_optimizer(model, "adamw", lr=BASE_LR, layer_decay=DECAY)
    for param in model.blocks[0].parameters():
        param.requires_grad_(True)
    optimizer.add_param_group({"params": model.blocks[0].parameters(), "lr": 1e-5})
    added = optimizer.param_groups[-1]
    assert added["param_names"] == [f"blocks.0.{n}" for n, _ in model.blocks[0].named_parameters()]
    assert added["lr"] == 1e-5
    model(torch.randn(2, 3, 32, 32)).sum().backward()
    optimizer.step()
    state = optimizer.state_dict()
    assert state["param_groups"][-1]["param_names"] == added["param_names"]


def test_lightning_unfreeze_and_add_param_group_on_our_optimizer():
    finetuning = pytest.importorskip("lightning.pytorch.callbacks.finetuning")
    model = vit()
    with torch.no_grad():  # Lightning skips a tensor *equal* to one already grouped (fresh norms are all ones)
        for param in model.parameters():
            param.normal_()
    finetuning.BaseFinetuning.freeze(model.blocks[0], train_bn=False)
    optimizer = create_optimizer(model, "adamw", lr=BASE_LR, layer_decay=DECAY, weight_decay=0.0)
    groups_before = len(optimizer.param_groups)
    finetuning.BaseFinetuning.unfreeze_and_add_param_group(model.blocks[0], optimizer, lr=BASE_LR / 10)
    assert len(optimizer.param_groups) == groups_before + 1
    added = optimizer.param_groups[-1]
    assert added["lr"] == pytest.approx(BASE_LR / 10)
    assert sorted(added["param_names"]) == sorted(f"blocks.0.{n}" for n, _ in model.blocks[0].named_parameters())
    before = model.blocks[0].mlp.fc1.weight.detach().clone()
    model(torch.randn(2, 3, 32, 32)).sum().backward()
    optimizer.step()
    assert (model.blocks[0].mlp.fc1.weight - before).abs().median().item() == pytest.approx(BASE_LR / 10, rel=1e-2)


# -- sgd ------------------------------------------------------------------------------------------------


def test_sgd_by_name_needs_its_momentum_said():
    model = vit()
    with pytest.raises(ValueError, match="timm's \"sgd\" momentum 0.9 with Nesterov"):
        create_optimizer(model, "sgd", lr=BASE_LR)
    timm_like = create_optimizer(model, "sgd", lr=BASE_LR, momentum=0.9, nesterov=True)
    assert {(g["momentum"], g["nesterov"]) for g in timm_like.param_groups} == {(0.9, True)}
    assert {g["momentum"] for g in create_optimizer(model, "sgd", lr=BASE_LR, momentum=0).param_groups} == {0}


# -- one config for every door --------------------------------------------------------------------------


def test_a_config_and_keyword_arguments_give_the_same_groups():
    model = vit()
    config = LayerDecayConfig(layer_decay=DECAY, lr_mult={"head": 10}, min_scale=0.2)
    by_config = auto_layer_decay(model, config, lr=BASE_LR)
    by_keywords = auto_layer_decay(model, lr=BASE_LR, layer_decay=DECAY, lr_mult={"head": 10}, min_scale=0.2)
    assert [(g["name"], g["lr"], g["param_names"]) for g in by_config] == \
        [(g["name"], g["lr"], g["param_names"]) for g in by_keywords]
    changed = auto_layer_decay(model, config, lr=BASE_LR, min_scale=0.0)  # a keyword changes the config
    assert min(g["scale"] for g in changed) < 0.2
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        optimizer = create_optimizer(model, "adamw", lr=BASE_LR, config=config, betas=(0.8, 0.9))
    assert [g["lr"] for g in optimizer.param_groups] == [g["lr"] for g in by_config]
    assert {g["betas"] for g in optimizer.param_groups} == {(0.8, 0.9)}
