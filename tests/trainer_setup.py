"""A tiny BERT classifier, a tiny mixture-of-experts LM and a toy dataset for Trainer and
distributed tests (CPU, seconds)."""

from __future__ import annotations

import torch
from transformers import BertConfig, BertForSequenceClassification

VOCAB, LENGTH = 64, 8


def tiny_bert(seed: int = 0, layers: int = 3) -> BertForSequenceClassification:
    torch.manual_seed(seed)
    config = BertConfig(
        vocab_size=VOCAB, hidden_size=16, num_hidden_layers=layers, num_attention_heads=2, intermediate_size=32,
        max_position_embeddings=32, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0, num_labels=2,
    )
    return BertForSequenceClassification(config)


def tiny_qwen3_moe(seed: int = 0):
    """A 2-layer Qwen3-MoE (4 experts) whose sizes split over 2 ranks of tensor and expert parallelism."""
    from transformers import Qwen3MoeConfig, Qwen3MoeForCausalLM

    torch.manual_seed(seed)
    config = Qwen3MoeConfig(
        vocab_size=VOCAB, hidden_size=32, intermediate_size=64, moe_intermediate_size=16, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, head_dim=8, num_experts=4, num_experts_per_tok=2,
    )
    return Qwen3MoeForCausalLM(config)


class ToyDataset(torch.utils.data.Dataset):
    """Random token sequences labelled by the parity of their sum: learnable, deterministic."""

    def __init__(self, size: int = 64, seed: int = 0) -> None:
        generator = torch.Generator().manual_seed(seed)
        self.input_ids = torch.randint(1, VOCAB, (size, LENGTH), generator=generator)
        self.labels = self.input_ids.sum(1) % 2

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> dict:
        return {"input_ids": self.input_ids[index], "labels": self.labels[index]}


def training_args(output_dir, **overrides):
    from hf_timm_layerdecay import LayerDecayTrainingArguments

    settings = dict(
        output_dir=str(output_dir), per_device_train_batch_size=8, max_steps=6, learning_rate=1e-3,
        report_to=[], logging_steps=1, save_strategy="no", use_cpu=True, seed=0, data_seed=0,
        disable_tqdm=True, layer_decay=0.5, lr_scheduler_type="constant",
    )
    settings.update(overrides)
    return LayerDecayTrainingArguments(**settings)
