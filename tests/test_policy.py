"""The policy around the decay: lr / weight-decay multipliers by name, a head multiplier, frozen
parameters kept in their groups for later unfreezing, groups added by unfreezing tools, and
SGD's momentum said out loud. Numbers per parameter, on real timm and transformers models."""

from __future__ import annotations

import json
import warnings

import pytest
import timm
import torch
import transformers
from torch import nn

from hf_timm_layerdecay import LayerDecayConfig, LayerDecayWarning, auto_layer_decay, create_optimizer, layer_ids
from hf_timm_layerdecay.api import resolve_layer_map
from hf_timm_layerdecay.core.lr_ratios import layer_lr_series

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


# -- LoRA+ ------------------------------------------------------------------------------------------------


def _peft_llama(**lora):
    peft = pytest.importorskip("peft")
    torch.manual_seed(0)
    base = transformers.LlamaForCausalLM(transformers.LlamaConfig(
        vocab_size=99, hidden_size=32, intermediate_size=37, num_hidden_layers=3, num_attention_heads=2,
        num_key_value_heads=1, max_position_embeddings=32))
    return peft, peft.get_peft_model(base, peft.LoraConfig(r=2, **lora))


@pytest.mark.filterwarnings("ignore:`is_gradient_checkpointing` is deprecated:FutureWarning")
@pytest.mark.parametrize("lora", [
    dict(target_modules=["q_proj", "v_proj"]),
    dict(target_modules=["q_proj", "v_proj", "embed_tokens"], use_dora=False),
    dict(target_modules=["q_proj", "v_proj"], use_dora=True),
], ids=["lora", "lora-embedding", "dora"])
def test_loraplus_at_decay_one_gives_pefts_own_lrs(lora):
    peft, model = _peft_llama(**lora)
    from peft.optimizers import create_loraplus_optimizer

    theirs = create_loraplus_optimizer(model, torch.optim.AdamW, lr=BASE_LR, loraplus_lr_ratio=16,
                                       loraplus_lr_embedding=1e-5)
    their_lr = {id(p): g["lr"] for g in theirs.param_groups for p in g["params"]}
    ours = create_optimizer(model, "adamw", lr=BASE_LR, layer_decay=1.0, loraplus_lr_ratio=16,
                            loraplus_lr_embedding=1e-5)
    named = dict(model.named_parameters())
    our_lr = {id(named[n]): g["lr"] for g in ours.param_groups for n in g["param_names"]}
    assert our_lr.keys() == their_lr.keys()
    embedding = {id(p) for n, p in named.items() if "lora_embedding_" in n}
    if embedding and {their_lr[i] for i in embedding} == {BASE_LR}:
        # PEFT 0.13 (the oldest supported) looks the tuner layer up with attrgetter(parameter name),
        # which returns the parameter, never the Embedding layer: its LoRA embedding weights get
        # the base lr, not loraplus_lr_embedding. We follow the rule PEFT documents, which 0.21 applies.
        assert {our_lr[i] for i in embedding} == {1e-5}
        their_lr.update({i: 1e-5 for i in embedding})
    assert our_lr == pytest.approx(their_lr, rel=1e-12)
    assert len(set(our_lr.values())) == (3 if "embed_tokens" in lora["target_modules"] else 2)


@pytest.mark.filterwarnings("ignore:`is_gradient_checkpointing` is deprecated:FutureWarning")
def test_loraplus_composes_with_the_layer_decay():
    _, model = _peft_llama(target_modules=["q_proj", "v_proj"])
    groups = auto_layer_decay(model, lr=BASE_LR, layer_decay=DECAY, loraplus_lr_ratio=16)
    expected = decayed(model)
    lrs = lr_of(groups)
    for name, lr in lrs.items():
        if ".lora_B." in name:
            a = name.replace(".lora_B.", ".lora_A.")
            assert lr == pytest.approx(16 * lrs[a], rel=1e-12)
            assert lrs[a] == pytest.approx(expected[a], rel=1e-12)  # lora_A follows its block's scale
    assert len({round(lrs[n] / 16, 15) for n in lrs if ".lora_B." in n}) == 3  # one lr per block
    with pytest.warns(UserWarning, match="no trainable parameter is a lora_B weight"):
        auto_layer_decay(vit(), lr=BASE_LR, loraplus_lr_ratio=16)


# -- Muon ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("layer_decay", [DECAY, None])
def test_muon_routes_the_block_matrices_to_muon_and_the_rest_to_adamw(layer_decay):
    model = vit()
    optimizer = create_optimizer(model, "muon", lr=0.02, layer_decay=layer_decay, weight_decay=0.01)
    assert type(optimizer).__name__ == "Muon"
    ids = layer_ids(model)
    head = max(ids.values())
    muon_names, fallback_names = set(), set()
    for group in optimizer.param_groups:
        (fallback_names if group.get("use_fallback") else muon_names).update(group["param_names"])
    assert muon_names | fallback_names == set(ids) and not muon_names & fallback_names
    shapes = dict((n, p.shape) for n, p in model.named_parameters())
    # Muon: the 2-D weights of the blocks; the fallback: stem, head, norms, biases, tokens
    assert muon_names == {n for n in ids if n.startswith("blocks.") and len(shapes[n]) == 2}
    assert {"cls_token", "pos_embed", "patch_embed.proj.weight", "head.weight", "norm.weight"} <= fallback_names
    assert all(ids[n] in (0, head) or len(shapes[n]) == 1 for n in fallback_names)
    expected = {n: 0.02 * (DECAY ** (head - i) if layer_decay else 1.0) for n, i in ids.items()}
    assert lr_of(optimizer.param_groups) == pytest.approx(expected, rel=1e-12)
    # one step moves every trainable parameter; a torch scheduler keeps every ratio
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 0.5)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    model(torch.randn(2, 3, 32, 32)).sum().backward()
    optimizer.step()
    scheduler.step()
    moved = {n for n, p in model.named_parameters() if not torch.equal(p, before[n])}
    assert moved == set(ids)
    assert lr_of(optimizer.param_groups) == pytest.approx({n: 0.5 * lr for n, lr in expected.items()}, rel=1e-12)


def test_torch_muon_class_is_refused_with_the_way_out():
    if not hasattr(torch.optim, "Muon"):
        pytest.skip("torch.optim.Muon needs torch >= 2.9")
    with pytest.raises(ValueError, match="torch.optim.Muon takes 2-D parameters only.*use opt='muon'"):
        create_optimizer(vit(), torch.optim.Muon, lr=0.02)


# -- gradual unfreezing, layers left out --------------------------------------------------------------


def test_gradual_unfreezing_trains_each_layer_at_its_lr_from_its_turn():
    from hf_timm_layerdecay import GradualUnfreezing

    model = vit(depth=2)  # ids: 0 stem, 1-2 blocks, 3 head
    schedule = GradualUnfreezing(model, every=2)
    optimizer = create_optimizer(model, "sgd", lr=0.1, momentum=0, layer_decay=DECAY, weight_decay=0.0,
                                 frozen="include")
    schedule.check_optimizer(optimizer, model)
    ids = resolve_layer_map(model).ids  # frozen parameters included
    x = torch.randn(2, 3, 32, 32)
    moved_at = {}
    for step in range(8):
        before = {n: p.detach().clone() for n, p in model.named_parameters()}
        model(x).sum().backward()
        optimizer.step()
        optimizer.zero_grad()
        schedule.step()
        for name, param in model.named_parameters():
            if name not in moved_at and not torch.equal(param, before[name]):
                moved_at[name] = step
    first = {}
    for name, step in moved_at.items():
        first.setdefault(ids[name], set()).add(step)
    # the head from step 0, then one layer more every 2 steps
    assert {layer: min(steps) for layer, steps in first.items()} == {3: 0, 2: 2, 1: 4, 0: 6}
    assert schedule.done and all(p.requires_grad for p in model.parameters())
    # SGD without momentum: a step of exactly lr x scale x gradient at each layer
    param = model.blocks[0].mlp.fc1.weight
    param.grad = torch.ones_like(param)
    before = param.detach().clone()
    optimizer.step()
    assert (before - param).mean().item() == pytest.approx(0.1 * DECAY ** 2, rel=1e-5)


def test_gradual_unfreezing_refuses_an_optimizer_without_the_frozen_layers():
    from hf_timm_layerdecay import GradualUnfreezing

    model = vit()
    schedule = GradualUnfreezing(model, every=5)
    with pytest.warns(LayerDecayWarning, match="have layer id 4: the layer decay has no effect"):
        optimizer = create_optimizer(model, "adamw", lr=BASE_LR)  # frozen="skip": only the head's groups
    with pytest.raises(ValueError, match="are in no optimizer group.*frozen='include'"):
        schedule.check_optimizer(optimizer, model)
    # the other way round the check passes: an optimizer built before the schedule froze anything
    model = vit()
    optimizer = create_optimizer(model, "adamw", lr=BASE_LR)
    GradualUnfreezing(model, every=5, optimizer=optimizer)


def test_user_frozen_parameters_stay_frozen_and_resume_restores_the_schedule():
    from hf_timm_layerdecay import GradualUnfreezing

    model = vit(depth=2)
    _freeze(model.patch_embed)
    schedule = GradualUnfreezing(model, every=3)
    for _ in range(12):
        schedule.step()
    assert schedule.done and not model.patch_embed.proj.weight.requires_grad  # the user's freeze
    again = GradualUnfreezing(vit(depth=2), every=3)
    again.load_state_dict({"steps": 6})
    assert again.unfrozen_layers == [1, 2, 3]


def test_no_opt_scale_leaves_small_layers_out_and_says_so():
    model = vit()  # 5 ids: scales 1/16 .. 1
    with pytest.warns(UserWarning, match=r"no_opt_scale=0.1: layers \[0\] \(.* tensors, scale below it\) are left out"):
        groups = auto_layer_decay(model, lr=BASE_LR, layer_decay=DECAY, no_opt_scale=0.1)
    assert min(g["layer_id"] for g in groups) == 1
    assert model.pos_embed.requires_grad  # the model is not touched
    with pytest.warns(UserWarning, match="left out of the optimizer and frozen"):
        auto_layer_decay(model, lr=BASE_LR, layer_decay=DECAY, no_opt_scale=0.1, freeze_no_opt=True)
    assert not model.pos_embed.requires_grad and model.blocks[0].norm1.weight.requires_grad
    with pytest.raises(ValueError, match="leaves every layer out"):
        auto_layer_decay(vit(), lr=BASE_LR, layer_decay=DECAY, no_opt_scale=2.0)


# -- a decay per region (towers, encoder, decoder) ---------------------------------------------------


def clip(text_layers: int = 2, vision_layers: int = 3) -> nn.Module:
    torch.manual_seed(0)
    return transformers.CLIPModel(transformers.CLIPConfig(
        text_config=dict(vocab_size=99, hidden_size=32, num_hidden_layers=text_layers, num_attention_heads=2,
                         intermediate_size=37, max_position_embeddings=16, bos_token_id=0, eos_token_id=1),
        vision_config=dict(image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=vision_layers,
                           num_attention_heads=2, intermediate_size=37),
        projection_dim=16,
    ))


def per_region(ids: dict[str, int], frames: dict[str, tuple[int, int, float]], rest=None) -> dict[str, float]:
    """``base lr x scale`` by the rule of EVA-CLIP's per-tower decay, written out: in a region whose
    blocks are ids ``a + 1 .. b`` with decay ``d``, id ``i`` gets ``d ** (b + 1 - clamp(i, a, b + 1))``;
    outside every region ``rest`` over the whole frame, or 1.0."""
    head = max(ids.values())
    expected = {}
    for name, i in ids.items():
        region = next((r for r in frames if name.startswith(r + ".")), None)
        if region is None:
            expected[name] = BASE_LR * (rest ** (head - i) if rest is not None else 1.0)
        else:
            a, b, d = frames[region]
            expected[name] = BASE_LR * d ** (b + 1 - min(max(i, a), b + 1))
    return expected


def test_a_decay_per_tower_runs_over_each_towers_own_depth():
    model = clip(text_layers=2, vision_layers=3)  # text blocks ids 1-2, vision 1-3, head 4
    ids = layer_ids(model)
    assert resolve_layer_map(model).regions == {"vision_model": (0, 3), "text_model": (0, 2)}
    groups = auto_layer_decay(model, lr=BASE_LR, layer_decay={"vision_model": 0.5, "text_model": 0.8})
    lrs = lr_of(groups)
    expected = per_region(ids, {"vision_model": (0, 3, 0.5), "text_model": (0, 2, 0.8)})
    assert lrs == pytest.approx(expected, rel=1e-12)
    # the numbers, for the top block and the embeddings of each tower
    assert lrs["vision_model.encoder.layers.2.mlp.fc1.weight"] == pytest.approx(BASE_LR * 0.5)
    assert lrs["vision_model.embeddings.patch_embedding.weight"] == pytest.approx(BASE_LR * 0.5 ** 4)
    assert lrs["text_model.encoder.layers.1.mlp.fc1.weight"] == pytest.approx(BASE_LR * 0.8)
    assert lrs["text_model.embeddings.token_embedding.weight"] == pytest.approx(BASE_LR * 0.8 ** 3)
    # what runs after a tower's blocks (its final norm), and the projections: the head's lr
    assert lrs["text_model.final_layer_norm.weight"] == lrs["visual_projection.weight"] == BASE_LR
    names = [g["name"] for g in groups]
    assert "vision_model.layer_1_decay" in names and "text_model.layer_1_decay" in names
    assert {g.get("region") for g in groups} == {"vision_model", "text_model", None}


def test_equal_decays_per_tower_on_towers_of_equal_depth_are_the_float_decay():
    model = clip(text_layers=3, vision_layers=3)
    per_tower = auto_layer_decay(model, lr=BASE_LR, layer_decay={"vision_model": DECAY, "text_model": DECAY})
    assert lr_of(per_tower) == pytest.approx(lr_of(auto_layer_decay(model, lr=BASE_LR, layer_decay=DECAY)), rel=1e-12)


def test_eva_clips_visual_and_text_lr_and_decay_compose():
    # EVA-CLIP: --visual-ld 0.5 --text-ld 0.8 --visual-lr 2x --text-lr 1x, a 10x head
    model = clip()
    groups = auto_layer_decay(model, lr=BASE_LR, layer_decay={"vision_model": 0.5, "text_model": 0.8},
                              lr_mult={"vision_model": 2.0}, head_lr_mult=10)
    ids = layer_ids(model)
    expected = per_region(ids, {"vision_model": (0, 3, 0.5), "text_model": (0, 2, 0.8)})
    head = max(ids.values())
    for name, lr in lr_of(groups).items():
        mult = (2.0 if name.startswith("vision_model.") else 1.0) * (10.0 if ids[name] == head else 1.0)
        assert lr == pytest.approx(expected[name] * mult, rel=1e-12), name


def t5(tied: bool) -> nn.Module:
    torch.manual_seed(0)
    model = transformers.T5ForConditionalGeneration(transformers.T5Config(
        vocab_size=50, d_model=16, d_kv=4, d_ff=32, num_layers=2, num_heads=2, decoder_start_token_id=0))
    if not tied:  # a separate output projection (T5 v1.1, mT5)
        model.lm_head.weight = nn.Parameter(model.lm_head.weight.detach().clone())
    return model


def test_encoder_and_decoder_decays_and_the_rest():
    model = t5(tied=False)  # shared embedding 0, encoder blocks 1-2, decoder 3-4, lm_head 5
    ids = layer_ids(model)
    assert resolve_layer_map(model).regions == {"encoder": (0, 2), "decoder": (2, 4)}
    with pytest.raises(ValueError, match=r"says no decay for 1 parameter\(s\) below the head outside the named "
                                         r"regions: 'shared.weight' \(id 0\)\. Add a decay for them with the key '\*'"):
        auto_layer_decay(model, lr=BASE_LR, layer_decay={"encoder": 0.5, "decoder": 0.8})
    lrs = lr_of(auto_layer_decay(model, lr=BASE_LR, layer_decay={"encoder": 0.5, "decoder": 0.8, "*": 0.9}))
    assert lrs == pytest.approx(per_region(ids, {"encoder": (0, 2, 0.5), "decoder": (2, 4, 0.8)}, rest=0.9), rel=1e-12)
    assert lrs["shared.weight"] == pytest.approx(BASE_LR * 0.9 ** 5)
    assert lrs["decoder.block.0.layer.0.SelfAttention.q.weight"] == pytest.approx(BASE_LR * 0.8 ** 2)
    assert lrs["encoder.final_layer_norm.weight"] == pytest.approx(BASE_LR * 0.5)  # joins its last block
    # tied, the shared embedding is the head: nothing below the head is outside the two regions
    tied = t5(tied=True)
    assert lr_of(auto_layer_decay(tied, lr=BASE_LR, layer_decay={"encoder": 0.5, "decoder": 0.8}))["shared.weight"] == BASE_LR


@pytest.mark.filterwarnings("ignore:`is_gradient_checkpointing` is deprecated:FutureWarning")
def test_a_peft_wrapped_model_finds_its_towers_by_their_short_names():
    peft = pytest.importorskip("peft")
    model = peft.get_peft_model(clip(), peft.LoraConfig(r=2, target_modules=["q_proj"]))
    lrs = lr_of(auto_layer_decay(model, lr=BASE_LR, layer_decay={"vision_model": 0.5, "text_model": 0.8}))
    assert len(lrs) == 10  # the LoRA A and B of q_proj in 3 + 2 blocks
    assert lrs["base_model.model.vision_model.encoder.layers.0.self_attn.q_proj.lora_A.default.weight"] == \
        pytest.approx(BASE_LR * 0.5 ** 3)
    assert lrs["base_model.model.text_model.encoder.layers.1.self_attn.q_proj.lora_B.default.weight"] == \
        pytest.approx(BASE_LR * 0.8)


def test_region_names_that_do_not_fit_the_model_are_errors_listing_its_regions():
    with pytest.raises(ValueError, match=r"layer_decay names no region 'audio_model' of CLIPModel; its regions "
                                         r"\(blocks' ids\): 'vision_model' \(1-3\), 'text_model' \(1-2\)"):
        auto_layer_decay(clip(), lr=BASE_LR, layer_decay={"audio_model": 0.5})
    with pytest.raises(ValueError, match="VisionTransformer has no regions .* give layer_decay as one float"):
        auto_layer_decay(vit(), lr=BASE_LR, layer_decay={"blocks": 0.5})


def test_a_decay_per_region_from_the_text_doors(capsys):
    from hf_timm_layerdecay import LayerDecayTrainingArguments
    from hf_timm_layerdecay.cli import main

    (args,) = transformers.HfArgumentParser(LayerDecayTrainingArguments).parse_args_into_dataclasses(
        ["--output_dir", "out", "--layer_decay", "vision_model=0.5,text_model=0.8", "--use_cpu"])
    assert args.layer_decay == {"vision_model": 0.5, "text_model": 0.8}
    assert main(["inspect", "clip", "--layer-decay", "vision_model=0.5,text_model=0.8", "--names", "0", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)["groups"]
    by_name = {row["name"]: row["scale"] for row in rows}
    assert by_name["vision_model.layer_12_decay"] == pytest.approx(0.5)
    assert by_name["text_model.layer_1_decay"] == pytest.approx(0.8 ** 12)


def test_per_layer_lr_series_name_the_region():
    groups = auto_layer_decay(clip(), lr=BASE_LR, layer_decay={"vision_model": 0.5, "text_model": 0.8})
    series = layer_lr_series(torch.optim.AdamW(groups, lr=BASE_LR))
    assert list(series) == ["layer_4", "text_model.layer_0", "text_model.layer_1", "text_model.layer_2",
                            "vision_model.layer_0", "vision_model.layer_1", "vision_model.layer_2", "vision_model.layer_3"]
    assert series["text_model.layer_1"] == pytest.approx(BASE_LR * 0.8 ** 2)
