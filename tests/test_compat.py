"""What differs between the supported timm / transformers / torch versions (hf_timm_layerdecay._compat).

The version-dependent branches are exercised here on whatever versions are installed, the
missing features simulated where needed; CI runs this file on the newest and the oldest
supported versions (``.ci/run``).
"""

import inspect
import warnings

import pytest
import timm
import torch
import transformers
from torch import nn

from hf_timm_layerdecay import layer_ids
from hf_timm_layerdecay._compat import (
    call_create_optimizer,
    create_timm_model,
    fix_timm_group_matcher,
    is_optimizer_factory,
)
from hf_timm_layerdecay.adapters.transformers import layout as hf_layout


class FakeTrainer:
    def __init__(self):
        self.model = nn.Linear(2, 2)
        self.model_wrapped = self.model


def test_create_optimizer_is_called_the_way_the_installed_trainer_takes_it():
    trainer, other = FakeTrainer(), nn.Linear(2, 2)
    with_model = lambda model=None: ("built for", model)  # noqa: E731 - transformers >= 5.3
    assert call_create_optimizer(with_model, trainer, other) == ("built for", other)
    without_model = lambda: "built for trainer.model"  # noqa: E731 - transformers < 5.3
    assert call_create_optimizer(without_model, trainer, None) == "built for trainer.model"
    assert call_create_optimizer(without_model, trainer, trainer.model) == "built for trainer.model"
    # a wrapper of the trainer's own model (DataParallel, DDP, torch.compile) is that model
    assert call_create_optimizer(without_model, trainer, nn.DataParallel(trainer.model)) == "built for trainer.model"
    with pytest.raises(TypeError, match=r"create_optimizer\(model=\.\.\.\) with another model needs transformers >= 5.3"):
        call_create_optimizer(without_model, trainer, other)


def test_optimizer_classes_are_not_factories_on_every_version():
    assert not is_optimizer_factory(torch.optim.AdamW)
    assert not is_optimizer_factory(torch.optim.SGD)
    try:
        from transformers.trainer_optimizer import is_optimizer_factory as theirs
    except ImportError:  # transformers < 5.2: the Trainer calls every choice with the groups
        assert not is_optimizer_factory(lambda model, **kwargs: None)
    else:
        factory = lambda model, **kwargs: None  # noqa: E731
        assert is_optimizer_factory(factory) == theirs(factory) is True


def test_layer_decay_trainer_imports_and_builds_its_optimizer(tmp_path):
    from hf_timm_layerdecay import LayerDecayTrainer

    from trainer_setup import ToyDataset, tiny_bert, training_args

    trainer = LayerDecayTrainer(model=tiny_bert(), args=training_args(tmp_path), train_dataset=ToyDataset())
    optimizer = trainer.create_optimizer()
    assert len({g["layer_id"] for g in optimizer.param_groups}) == 5  # embeddings, 3 blocks, head
    if "model" not in inspect.signature(transformers.Trainer.create_optimizer).parameters:
        trainer.optimizer = None
        with pytest.raises(TypeError, match="needs transformers >= 5.3"):
            trainer.create_optimizer(tiny_bert())


def test_a_model_timm_cannot_build_on_meta_is_built_on_the_cpu_with_a_warning(monkeypatch):
    real = timm.create_model

    def like_old_timm(name, **kwargs):  # timm < 1.0.21: drop-path rates through .item()
        torch.linspace(0, 0.1, 4)[0].item()
        return real(name, **kwargs)

    monkeypatch.setattr(timm, "create_model", like_old_timm)
    with pytest.warns(UserWarning, match="cannot build resnet18 on the meta device .*building it on the CPU"):
        model = create_timm_model("resnet18")
    assert model.fc.weight.device.type == "cpu"

    def broken(name, **kwargs):
        raise RuntimeError("something else")

    monkeypatch.setattr(timm, "create_model", broken)
    with pytest.raises(RuntimeError, match="something else"):  # only the meta-device failure falls back
        create_timm_model("resnet18")


def test_a_model_that_builds_on_meta_stays_there():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model = create_timm_model("vit_tiny_patch16_224", num_classes=3)
    assert model.head.weight.device.type == "meta"


def test_norm_pre_of_clip_vits_is_in_the_stem_on_every_timm():
    # timm < 1.0.31's matcher gives norm_pre (before block 0) to the head; the adapter corrects it
    ids = layer_ids(create_timm_model("vit_base_patch16_clip_224"))
    assert ids["norm_pre.weight"] == ids["patch_embed.proj.weight"] == 0
    assert ids["blocks.0.norm1.weight"] == 1 and ids["head.weight"] == 13


def test_the_matcher_fix_leaves_other_matchers_alone():
    vit = create_timm_model("vit_tiny_patch16_224", pre_norm=True)
    fixed = {"stem": r"^cls_token|reg_token|pos_embed|patch_embed|norm_pre", "blocks": [(r"^blocks\.(\d+)", None)]}
    assert fix_timm_group_matcher(vit, fixed) == (fixed, None)
    plain_vit = create_timm_model("vit_tiny_patch16_224")  # no norm_pre parameters
    old = {"stem": r"^cls_token|pos_embed|patch_embed", "blocks": [(r"^blocks\.(\d+)", None)]}
    assert fix_timm_group_matcher(plain_vit, old) == (old, None)
    resnet = create_timm_model("resnet18")
    assert fix_timm_group_matcher(resnet, resnet.group_matcher()) == (resnet.group_matcher(), None)


def test_without_gradient_checkpointing_layers_the_transformers_adapter_warns(monkeypatch):
    from transformers import BertConfig, BertModel

    model = BertModel(BertConfig(hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=32))
    monkeypatch.setattr(hf_layout, "_gradient_checkpointing_layer", lambda: None)  # transformers < 4.52
    with pytest.warns(UserWarning, match="has no GradientCheckpointingLayer .* supports transformers >= 4.57"):
        layer_ids(model)


def test_on_transformers_4_a_list_of_blocks_at_one_id_is_warned_about(monkeypatch):
    from transformers import BertConfig, BertModel

    model = BertModel(BertConfig(hidden_size=16, num_hidden_layers=3, num_attention_heads=2, intermediate_size=32))
    monkeypatch.setattr(hf_layout, "_TRANSFORMERS_4", True)
    layout = hf_layout.find_layout(model)
    ids = layer_ids(model)  # each block its own id: nothing to say
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        hf_layout.warn_unnumbered_block_lists(model, layout, ids)
    lumped = {n: 4 if n.startswith("encoder.layer.") else i for n, i in ids.items()}  # what a missed stack gets
    empty = hf_layout.Region("", model, "model")  # a layout that found no blocks
    with pytest.warns(UserWarning, match=r"every item of 'encoder.layer' gets one and the same layer id"):
        hf_layout.warn_unnumbered_block_lists(model, empty, lumped)
    monkeypatch.setattr(hf_layout, "_TRANSFORMERS_4", False)  # transformers 5: every repeated block is marked
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        hf_layout.warn_unnumbered_block_lists(model, empty, lumped)
