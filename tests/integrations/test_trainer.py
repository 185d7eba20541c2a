"""LayerDecayTrainer: the real transformers Trainer, with layer decay, on CPU."""

import math

import pytest
import torch
import transformers
from transformers import HfArgumentParser, Trainer, TrainerCallback, TrainingArguments

from hf_timm_layerdecay.api import resolve_layer_map
from hf_timm_layerdecay import LayerDecayTrainer, LayerDecayTrainingArguments, create_optimizer, layer_ids
from hf_timm_layerdecay.integrations.resume import ResumeMismatchError
from hf_timm_layerdecay.integrations.deepspeed import deepspeed_layer_decay_problems
from trainer_setup import ToyDataset, tiny_bert, training_args

TRANSFORMERS_5 = int(transformers.__version__.split(".")[0]) >= 5

# tiny BERT, 3 layers: embeddings 0, encoder.layer.i -> i + 1, pooler and classifier 4
MAX_ID = 4


class RecordLrs(TrainerCallback):
    """The lr of every param group after every optimizer step."""

    def __init__(self):
        self.rows = []

    def on_step_end(self, args, state, control, optimizer=None, **kwargs):
        self.rows.append([g["lr"] for g in optimizer.param_groups])


def trainer_for(tmp_path, model=None, callbacks=(), **overrides):
    model = model or tiny_bert()
    return LayerDecayTrainer(
        model=model, args=training_args(tmp_path, **overrides), train_dataset=ToyDataset(), callbacks=list(callbacks)
    )


def scales(optimizer):
    return [0.5 ** (MAX_ID - g["layer_id"]) for g in optimizer.param_groups]


def test_groups_carry_the_real_lr_of_each_layer(tmp_path):
    trainer = trainer_for(tmp_path, weight_decay=0.01)
    optimizer = trainer.create_optimizer()
    assert type(optimizer) is torch.optim.AdamW and optimizer.defaults["fused"] is True  # the default optim
    ids = layer_ids(trainer.model)
    assert ids["bert.embeddings.word_embeddings.weight"] == 0 and ids["bert.encoder.layer.2.output.dense.weight"] == 3
    assert ids["classifier.weight"] == MAX_ID
    for group in optimizer.param_groups:
        assert group["lr"] == pytest.approx(1e-3 * 0.5 ** (MAX_ID - group["layer_id"]))
        assert {ids[n] for n in group["param_names"]} == {group["layer_id"]}
    wd = {n: g["weight_decay"] for g in optimizer.param_groups for n in g["param_names"]}
    decayed_by_trainer = set(Trainer.get_decay_parameter_names(trainer, trainer.model))
    assert {n for n, w in wd.items() if w == 0.01} == decayed_by_trainer  # the Trainer's weight-decay split
    assert wd["bert.encoder.layer.0.attention.self.query.weight"] == 0.01
    assert wd["bert.encoder.layer.0.attention.output.LayerNorm.weight"] == wd["classifier.bias"] == 0.0


def test_one_class_name_and_one_argument(tmp_path):
    args = TrainingArguments(output_dir=str(tmp_path), use_cpu=True, report_to=[], max_steps=2, learning_rate=1e-3)
    trainer = LayerDecayTrainer(model=tiny_bert(), args=args, train_dataset=ToyDataset(), layer_decay=0.5)
    trainer.train()
    lrs = {g["layer_id"]: g["initial_lr"] for g in trainer.optimizer.param_groups}
    assert lrs == pytest.approx({i: 1e-3 * 0.5 ** (MAX_ID - i) for i in range(MAX_ID + 1)})
    with pytest.raises(ValueError, match="disagrees with args.layer_decay"):
        LayerDecayTrainer(model=tiny_bert(), args=training_args(tmp_path, layer_decay=0.8), layer_decay=0.5)


def test_off_is_a_plain_trainer(tmp_path):
    trainer = trainer_for(tmp_path, layer_decay=None)
    assert [len(g["params"]) for g in trainer.create_optimizer().param_groups] == [
        len(g["params"]) for g in Trainer.create_optimizer(trainer_for(tmp_path, layer_decay=None)).param_groups
    ]


@pytest.mark.parametrize(
    "scheduler, kwargs",
    [
        ("linear", {}),
        ("cosine", {}),
        ("cosine_with_min_lr", {"min_lr_rate": 0.1}),
        ("cosine_with_min_lr", {"min_lr": 1e-4}),
        ("constant_with_warmup", {}),
        ("polynomial", {"lr_end": 1e-5, "power": 2.0}),
    ],
)
def test_every_scheduler_keeps_the_ratios_and_the_head_follows_the_plain_trainer(tmp_path, scheduler, kwargs):
    settings = dict(lr_scheduler_type=scheduler, lr_scheduler_kwargs=kwargs, warmup_steps=2, max_steps=8)
    decayed, plain = RecordLrs(), RecordLrs()
    trainer = trainer_for(tmp_path / "a", callbacks=[decayed], **settings)
    trainer.train()
    trainer_for(tmp_path / "b", callbacks=[plain], layer_decay=None, **settings).train()
    expected = scales(trainer.optimizer)
    assert len(decayed.rows) == 8
    for step, (row, plain_row) in enumerate(zip(decayed.rows, plain.rows)):
        assert row[-1] == pytest.approx(plain_row[0], rel=1e-12), step  # head lr = what Trainer would use
        assert row == pytest.approx([row[-1] * s for s in expected], rel=1e-9), step


def test_logged_learning_rate_is_the_heads(tmp_path):
    trainer = trainer_for(tmp_path, log_lr_per_layer=True, lr_scheduler_type="linear", max_steps=4)
    trainer.train()
    logs = [entry for entry in trainer.state.log_history if "loss" in entry]
    assert len(logs) == 4
    for entry in logs:
        assert entry["learning_rate"] == entry[f"learning_rate_layer_{MAX_ID}"]
        assert entry["learning_rate_min"] == pytest.approx(entry["learning_rate"] * 0.5**MAX_ID)
        assert entry["learning_rate_layer_2"] == pytest.approx(entry["learning_rate"] * 0.25)
    assert logs[0]["learning_rate"] == pytest.approx(1e-3 * 3 / 4)  # linear decay after step 1 of 4


@pytest.mark.parametrize(
    "optim, optim_args, cls_name",
    [
        ("adamw_torch", None, "AdamW"),
        ("adamw_torch_fused", None, "AdamW"),
        ("adafactor", None, "Adafactor"),
        ("sgd", "momentum=0.9,nesterov=true", "SGD"),
        ("rmsprop", None, "RMSprop"),
    ],
)
def test_trainer_optimizers_keep_working(tmp_path, optim, optim_args, cls_name):
    trainer = trainer_for(tmp_path, optim=optim, optim_args=optim_args, max_steps=2)
    trainer.train()
    optimizer = trainer.optimizer.optimizer  # accelerate's wrapper around the real one
    assert type(optimizer).__name__ == cls_name
    _, expected = Trainer.get_optimizer_cls_and_kwargs(trainer.args, trainer.model)  # what a plain Trainer passes
    assert {k: optimizer.defaults[k] for k in expected if k != "lr"} == {k: v for k, v in expected.items() if k != "lr"}
    if optim == "sgd" and TRANSFORMERS_5:  # transformers 4.x ignores optim_args for sgd
        assert optimizer.defaults["momentum"] == 0.9 and optimizer.defaults["nesterov"] is True
    assert [g["lr"] for g in optimizer.param_groups] == pytest.approx([1e-3 * s for s in scales(optimizer)])
    assert math.isfinite(trainer.state.log_history[-1]["train_loss"])


def test_optimizers_with_their_own_groups_are_refused(tmp_path):
    trainer = LayerDecayTrainer(
        model=tiny_bert(), args=training_args(tmp_path), train_dataset=ToyDataset(),
        optimizer_cls_and_kwargs=(torch.optim.AdamW, {"lr": 1e-3, "params": []}),
    )
    with pytest.raises(ValueError, match="builds its own parameter groups, so layer decay cannot be applied"):
        trainer.create_optimizer()


def test_bitsandbytes_8bit_keeps_the_embeddings_in_32_bits_as_the_plain_trainer_does(tmp_path):
    """Trainer.create_optimizer registers every nn.Embedding of a bitsandbytes 8-bit optimizer for
    32-bit states after building it; LayerDecayTrainer must not skip that (it did: 8-bit states)."""
    bnb = pytest.importorskip("bitsandbytes")
    from transformers import BertConfig, BertForSequenceClassification

    def bert_with_8bit_sized_tensors():  # bitsandbytes keeps tensors under 4096 entries in 32 bits anyway
        torch.manual_seed(0)
        return BertForSequenceClassification(BertConfig(
            vocab_size=128, hidden_size=64, num_hidden_layers=2, num_attention_heads=2, intermediate_size=128,
            max_position_embeddings=32, num_labels=2,
        ))

    state_dtypes = {}
    try:
        for cls in (Trainer, LayerDecayTrainer):
            bnb.optim.GlobalOptimManager._instance = None  # its registry of overrides is process-wide
            model = bert_with_8bit_sized_tensors()
            trainer = cls(model=model, args=training_args(tmp_path / cls.__name__, optim="adamw_bnb_8bit", max_steps=1),
                          train_dataset=ToyDataset())
            trainer.train()
            optimizer = trainer.optimizer.optimizer
            state_dtypes[cls.__name__] = [
                optimizer.state[p]["state1"].dtype
                for p in (model.bert.embeddings.word_embeddings.weight, model.bert.encoder.layer[0].intermediate.dense.weight)
            ]
    finally:
        bnb.optim.GlobalOptimManager._instance = None
    assert state_dtypes == {"Trainer": [torch.float32, torch.uint8], "LayerDecayTrainer": [torch.float32, torch.uint8]}
    assert type(optimizer).__module__.startswith("bitsandbytes.")
    assert sorted({(g["layer_id"], g["lr"]) for g in optimizer.param_groups}) == [
        (0, 1e-3 / 8), (1, 1e-3 / 4), (2, 1e-3 / 2), (3, 1e-3)
    ]


def test_one_real_adam_step_moves_each_layer_by_its_lr(tmp_path):
    model = tiny_bert()
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    trainer = trainer_for(tmp_path, model=model, optim="adamw_torch", weight_decay=0.0, max_steps=1)
    trainer.train()
    ids = layer_ids(model)
    largest = {}
    for name, param in model.named_parameters():
        moved = (param.detach() - before[name]).abs().max().item()
        largest[ids[name]] = max(largest.get(ids[name], 0.0), moved)
    # Adam's first step moves every element with a gradient by lr * g / (|g| + eps): about lr
    for layer_id, moved in largest.items():
        assert moved == pytest.approx(1e-3 * 0.5 ** (MAX_ID - layer_id), rel=1e-3), layer_id


class ToyImages(torch.utils.data.Dataset):
    def __init__(self, size: int = 16) -> None:
        generator = torch.Generator().manual_seed(0)
        self.pixel_values = torch.randn(size, 3, 16, 16, generator=generator)
        self.labels = (self.pixel_values.mean((1, 2, 3)) > 0).long()

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> dict:
        return {"pixel_values": self.pixel_values[index], "labels": self.labels[index]}


def test_a_timm_model_loaded_through_transformers_trains_with_timms_layers(tmp_path):
    # AutoModelForImageClassification loads a timm/... checkpoint as TimmWrapperForImageClassification;
    # its ViT keeps timm's ids: tokens and patch embedding 0, blocks 1-2, head 3 (lr 1e-3 * 0.5 ** (3 - id))
    from transformers import TimmWrapperConfig, TimmWrapperForImageClassification

    torch.manual_seed(0)
    vit = dict(img_size=16, patch_size=8, depth=2, embed_dim=16, num_heads=2)
    config = TimmWrapperConfig(architecture="vit_tiny_patch16_224", num_labels=2, model_args=vit)
    model = TimmWrapperForImageClassification(config)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    args = training_args(tmp_path, optim="adamw_torch", weight_decay=0.0, max_steps=1, per_device_train_batch_size=16)
    LayerDecayTrainer(model=model, args=args, train_dataset=ToyImages()).train()
    moved = {n: (p.detach() - before[n]).abs().max().item() for n, p in model.named_parameters()}
    # Adam's first step moves every element with a gradient by about its lr
    for stem in ("timm_model.pos_embed", "timm_model.cls_token", "timm_model.patch_embed.proj.weight"):
        assert moved[stem] == pytest.approx(1e-3 * 0.5**3, rel=1e-3), stem
    assert moved["timm_model.blocks.0.attn.qkv.weight"] == pytest.approx(1e-3 * 0.5**2, rel=1e-3)
    assert moved["timm_model.head.weight"] == pytest.approx(1e-3, rel=1e-3)
    optimizer = LayerDecayTrainer(model=model, args=training_args(tmp_path, weight_decay=0.05)).create_optimizer()
    wd = {n: g["weight_decay"] for g in optimizer.param_groups for n in g["param_names"]}
    assert wd["timm_model.pos_embed"] == wd["timm_model.cls_token"] == 0.0  # timm never decays them
    assert wd["timm_model.blocks.0.attn.qkv.weight"] == 0.05


def test_gradient_accumulation_and_bf16_on_cpu(tmp_path):
    recorder = RecordLrs()
    trainer = trainer_for(
        tmp_path, callbacks=[recorder], gradient_accumulation_steps=2, bf16=True, max_steps=3, lr_scheduler_type="linear"
    )
    trainer.train()
    assert trainer.state.global_step == 3 and len(recorder.rows) == 3
    expected = scales(trainer.optimizer)
    for row in recorder.rows:
        assert row == pytest.approx([row[-1] * s for s in expected], rel=1e-9)
    assert all(math.isfinite(e["loss"]) for e in trainer.state.log_history if "loss" in e)


def losses(trainer):
    return {e["step"]: e["loss"] for e in trainer.state.log_history if "loss" in e}


def test_resume_continues_exactly_and_refuses_another_decay(tmp_path):
    common = dict(max_steps=6, save_strategy="steps", save_steps=3, lr_scheduler_type="cosine", warmup_steps=1)
    full_lrs, resumed_lrs = RecordLrs(), RecordLrs()
    full = trainer_for(tmp_path / "full", callbacks=[full_lrs], **common)
    full.train()

    resumed = trainer_for(tmp_path / "resumed", model=tiny_bert(seed=1), callbacks=[resumed_lrs], **common)
    resumed.train(resume_from_checkpoint=str(tmp_path / "full" / "checkpoint-3"))
    assert sorted(losses(resumed)) == [1, 2, 3, 4, 5, 6]  # 1-3 come back from the checkpoint's state
    assert len(resumed_lrs.rows) == 3  # only steps 4-6 ran
    assert [losses(resumed)[s] for s in (4, 5, 6)] == pytest.approx([losses(full)[s] for s in (4, 5, 6)], rel=1e-5)
    for resumed_row, full_row in zip(resumed_lrs.rows, full_lrs.rows[3:]):
        assert resumed_row == pytest.approx(full_row, rel=1e-12)
    for a, b in zip(full.model.parameters(), resumed.model.parameters()):
        assert torch.allclose(a, b, atol=1e-6)

    other = trainer_for(tmp_path / "other", layer_decay=0.8, **common)
    with pytest.raises(ResumeMismatchError, match=r"scale 0\.0625 in the checkpoint, 0\.4096 now"):
        other.train(resume_from_checkpoint=str(tmp_path / "full" / "checkpoint-3"))


def test_plain_trainer_with_optimizers_argument(tmp_path):
    """The documented way without LayerDecayTrainer: pass the optimizer, let Trainer schedule it."""
    model = tiny_bert()
    args = TrainingArguments(
        output_dir=str(tmp_path), use_cpu=True, report_to=[], max_steps=4, learning_rate=1e-3,
        lr_scheduler_type="cosine", warmup_steps=1,
    )
    optimizer = create_optimizer(model, "adamw", lr=args.learning_rate, layer_decay=0.5, weight_decay=0.01)
    recorder = RecordLrs()
    Trainer(model=model, args=args, train_dataset=ToyDataset(), optimizers=(optimizer, None), callbacks=[recorder]).train()
    expected = scales(optimizer)
    assert len(recorder.rows) == 4
    for row in recorder.rows:
        assert row == pytest.approx([row[-1] * s for s in expected], rel=1e-9)


def test_arguments_from_the_command_line(tmp_path):
    parser = HfArgumentParser(LayerDecayTrainingArguments)
    (args,) = parser.parse_args_into_dataclasses(
        ["--output_dir", str(tmp_path), "--layer_decay", "0.8", "--layer_decay_min_scale", "0.01",
         "--no_weight_decay_names", "pos_embed", "*.gamma", "--layer_decay_granularity", "stage"]
    )
    assert (args.layer_decay, args.layer_decay_min_scale, args.layer_decay_granularity) == (0.8, 0.01, "stage")
    assert args.no_weight_decay_names == ["pos_embed", "*.gamma"]
    with pytest.raises(ValueError, match=r"layer_decay=8.0 is above 1"):
        parser.parse_args_into_dataclasses(["--output_dir", str(tmp_path), "--layer_decay", "8"])


def test_deepspeed_config_problems_are_named():
    assert deepspeed_layer_decay_problems({"zero_optimization": {"stage": 2}, "bf16": {"enabled": True}}) == []
    # DeepSpeed builds AdamW, Adam, Lamb, Lion, Adagrad and torch.optim classes from the groups it is given
    for kind in ("AdamW", "adam", "Lamb", "Lion", "Adagrad", "SGD", "RMSprop"):
        assert deepspeed_layer_decay_problems({"optimizer": {"type": kind}}) == [], kind
    problems = deepspeed_layer_decay_problems({"optimizer": {"type": "Muon"}, "scheduler": {"type": "WarmupDecayLR"}})
    assert "'optimizer' section has type 'Muon', which makes parameter groups of its own" in problems[0]
    assert "adam, adamw, adagrad, lamb, lion or a torch.optim class" in problems[0]
    assert "WarmupDecayLR has warmup_max_lr=0.001" in problems[1] and "lr_scheduler_type" in problems[1]
    for kind in ("MuAdamW", "NoSuchOptimizer"):
        assert len(deepspeed_layer_decay_problems({"optimizer": {"type": kind}})) == 1, kind


def test_multipliers_and_frozen_parameters_from_the_arguments(tmp_path):
    model = tiny_bert()
    for param in model.bert.encoder.layer[0].parameters():
        param.requires_grad_(False)
    trainer = trainer_for(tmp_path, model=model, lr_scheduler_type="linear", max_steps=3, log_lr_per_layer=True,
                          layer_decay_head_lr_mult=10.0, layer_decay_lr_mult=["*.attention.self.query.*=2"],
                          layer_decay_frozen="include")
    optimizer = trainer.create_optimizer()
    ids = resolve_layer_map(model).ids
    names = {n for g in optimizer.param_groups for n in g["param_names"]}
    assert {n for n, _ in model.named_parameters()} == names  # the frozen block is grouped too
    assert {ids[n] for n, _ in model.bert.encoder.layer[0].named_parameters(prefix="bert.encoder.layer.0")} == {1}
    for group in optimizer.param_groups:
        for name in group["param_names"]:
            mult = (10.0 if ids[name] == MAX_ID else 1.0) * (2.0 if ".attention.self.query." in name else 1.0)
            assert group["lr"] == pytest.approx(1e-3 * 0.5 ** (MAX_ID - ids[name]) * mult, rel=1e-12), name
    trainer.train()  # the watchdog stays silent: every group keeps its ratio under the schedule
    logged = [entry for entry in trainer.state.log_history if "loss" in entry]
    assert logged[1]["learning_rate"] == pytest.approx(1e-3 / 3)  # the head layer's lr, without head_lr_mult


def test_gradual_unfreezing_callback_unfreezes_one_layer_per_step(tmp_path):
    from hf_timm_layerdecay import GradualUnfreezingCallback

    model = tiny_bert()
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    trainer = trainer_for(tmp_path, model=model, callbacks=[GradualUnfreezingCallback(every=1)], max_steps=3,
                          layer_decay_frozen="include", weight_decay=0.0)
    trainer.train()
    ids = resolve_layer_map(model).ids
    changed = {ids[n] for n, p in model.named_parameters() if not torch.equal(p, before[n])}
    assert changed == {2, 3, 4}  # steps 0, 1, 2 trained the head, then layer 3, then layer 2
    assert not model.bert.embeddings.word_embeddings.weight.requires_grad


def test_gradual_unfreezing_callback_leaves_the_users_own_freeze(tmp_path):
    from hf_timm_layerdecay import GradualUnfreezingCallback

    model = tiny_bert()
    for param in model.bert.embeddings.parameters():
        param.requires_grad_(False)  # the user's: left out of the groups (frozen="skip"), never unfrozen
    trainer = trainer_for(tmp_path, model=model, callbacks=[GradualUnfreezingCallback(every=1)], max_steps=2)
    trainer.train()  # the user's own freeze: the schedule leaves the embeddings alone
    assert not model.bert.embeddings.word_embeddings.weight.requires_grad


def test_gradual_unfreezing_by_epochs(tmp_path):
    from hf_timm_layerdecay import GradualUnfreezingCallback

    model = tiny_bert()
    trainer = trainer_for(tmp_path, model=model, callbacks=[GradualUnfreezingCallback(every=1, unit="epoch")],
                          max_steps=-1, num_train_epochs=2, per_device_train_batch_size=32)  # 2 steps an epoch
    trainer.train()
    ids = resolve_layer_map(model).ids
    unfrozen = {ids[n] for n, p in model.named_parameters() if p.requires_grad}
    assert unfrozen == {2, 3, 4}  # the head, then one layer after each of the 2 epochs


def test_options_without_layer_decay_are_not_silently_ignored(tmp_path):
    with pytest.warns(UserWarning, match="layer_decay_head_lr_mult set, but layer_decay is None.*Set layer_decay"):
        trainer_for(tmp_path, layer_decay=None, layer_decay_head_lr_mult=10.0)
    trainer = trainer_for(tmp_path, layer_decay=1.0, layer_decay_head_lr_mult=10.0)  # multipliers without decay
    ids = resolve_layer_map(trainer.model).ids
    for group in trainer.create_optimizer().param_groups:
        for name in group["param_names"]:
            assert group["lr"] == pytest.approx(1e-2 if ids[name] == MAX_ID else 1e-3), name
