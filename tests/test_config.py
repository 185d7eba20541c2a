"""One options object for every door: each field of LayerDecayConfig is a keyword of
auto_layer_decay and create_optimizer, a LayerDecayTrainingArguments field and an inspect flag,
checked in one place."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from transformers import HfArgumentParser

from hf_timm_layerdecay import AutoStrategy, LayerDecayConfig, LayerDecayTrainingArguments, auto_layer_decay
from hf_timm_layerdecay.cli import parser
from hf_timm_layerdecay.config import option_fields
from hf_timm_layerdecay.integrations.trainer import argument_name, layer_decay_config

#: A value other than the default for every option, as text (the Trainer's and the command line's
#: form) and as the config holds it.
NON_DEFAULT = {
    "layer_decay": (["0.8"], 0.8),
    "weight_decay": (["0.1"], 0.1),
    "strategy": (["structural"], "structural"),
    "granularity": (["stage"], "stage"),
    "encoder_decoder": (["parallel"], "parallel"),
    "tower": (["vision_model"], "vision_model"),
    "tied_head": (["embedding"], "embedding"),
    "min_scale": (["0.1"], 0.1),
    "normalize_depth": (["12"], 12.0),
    "no_weight_decay": (["pos_embed", "*.gamma"], ("pos_embed", "*.gamma")),
    "model_no_weight_decay": ([], False),
    "allow_decay_above_one": ([], True),
    "lr_mult": (["head=10", "blocks.0=0.5"], {"head": 10.0, "blocks.0": 0.5}),
    "wd_mult": (["*.gamma=0"], {"*.gamma": 0.0}),
    "head_lr_mult": (["20"], 20.0),
    "loraplus_lr_ratio": (["16"], 16.0),
    "loraplus_lr_embedding": (["1e-5"], 1e-5),
    "no_opt_scale": (["0.001"], 0.001),
    "freeze_no_opt": ([], True),
    "frozen": (["include"], "include"),
}


def test_every_option_has_a_non_default_value_here():
    assert list(NON_DEFAULT) == [f.name for f in option_fields()]
    defaults = LayerDecayConfig()
    for name, (_, value) in NON_DEFAULT.items():
        assert getattr(defaults, name) != value, name


def test_every_option_is_a_trainer_argument():
    argv = ["--output_dir", "out", "--use_cpu"]
    for option in option_fields():
        text, _ = NON_DEFAULT[option.name]
        name = argument_name(option.name) or option.name  # weight_decay: the Trainer's own
        if option.metadata["door"] is bool:
            argv.append(f"--{'no_' if option_default_is_true(option) else ''}{name}")
        else:
            argv += [f"--{name}", *text]
    (args,) = HfArgumentParser(LayerDecayTrainingArguments).parse_args_into_dataclasses(argv)
    config = layer_decay_config(args)
    assert {name: getattr(config, name) for name in NON_DEFAULT} == {n: v for n, (_, v) in NON_DEFAULT.items()}


def test_every_option_is_an_inspect_flag():
    argv = ["inspect", "vit_tiny_patch16_224"]
    for option in option_fields():
        text, _ = NON_DEFAULT[option.name]
        flag = "--" + option.name.replace("_", "-")
        if option.metadata["door"] is bool:
            argv.append(flag.replace("--", "--no-") if option_default_is_true(option) else flag)
        else:
            argv += [flag, *text]
    args = parser().parse_args(argv)
    config = LayerDecayConfig(**{f.name: getattr(args, f.name) for f in option_fields()})
    assert {name: getattr(config, name) for name in NON_DEFAULT} == {n: v for n, (_, v) in NON_DEFAULT.items()}


def option_default_is_true(option: dataclasses.Field) -> bool:
    return option.default is True


def test_every_option_is_a_keyword_of_auto_layer_decay():
    model = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Linear(2, 2))
    for option in option_fields():
        auto_layer_decay(model, lr=1.0, **{option.name: getattr(LayerDecayConfig(), option.name)})
    with pytest.raises(TypeError, match="unknown layer-decay option 'layer_decy'; did you mean layer_decay"):
        auto_layer_decay(model, lr=1.0, layer_decy=0.5)


def test_the_config_checks_every_option_once():
    with pytest.raises(ValueError, match="layer_decay=1.5 is above 1"):
        LayerDecayConfig(layer_decay=1.5)
    assert LayerDecayConfig(layer_decay=1.5, allow_decay_above_one=True).layer_decay == 1.5
    with pytest.raises(ValueError, match="loraplus_lr_embedding=1e-05 applies with LoRA\\+ only"):
        LayerDecayConfig(loraplus_lr_embedding=1e-5)
    with pytest.raises(ValueError, match="freeze_no_opt=True freezes what no_opt_scale leaves out"):
        LayerDecayConfig(freeze_no_opt=True)
    with pytest.raises(ValueError, match="frozen must be one of"):
        LayerDecayConfig(frozen="thaw")
    with pytest.raises(ValueError, match=r"lr_mult\['head'\] must be a finite number >= 0"):
        LayerDecayConfig(lr_mult={"head": -1})
    with pytest.raises(ValueError, match="lr_mult entries are pattern=multiplier"):
        LayerDecayConfig(lr_mult=["head"])
    with pytest.raises(ValueError, match="granularity='stage' given with strategy=AutoStrategy"):
        LayerDecayConfig(strategy=AutoStrategy(), granularity="stage")
    with pytest.raises(ValueError, match="tower='vision_model' given with strategy=.*a rule of your own"):
        LayerDecayConfig(strategy={".*": 0}, tower="vision_model")
    # the Trainer arguments are checked by the same code, when they are made
    with pytest.raises(ValueError, match="layer_decay=1.5 is above 1"):
        LayerDecayTrainingArguments(output_dir="out", use_cpu=True, layer_decay=1.5)
    args = LayerDecayTrainingArguments(output_dir="out", use_cpu=True, layer_decay=1.5,
                                       layer_decay_allow_decay_above_one=True, layer_decay_lr_mult={"classifier": 10})
    assert layer_decay_config(args).lr_mult == {"classifier": 10.0}


def test_auto_strategy_options_given_flat_or_as_an_auto_strategy_are_the_same():
    flat = LayerDecayConfig(granularity="stage", strategy="structural").auto_strategy()
    assert flat == AutoStrategy(granularity="stage", family_adapters=False)
    assert LayerDecayConfig(strategy=AutoStrategy(tower="x")).auto_strategy() == AutoStrategy(tower="x")
