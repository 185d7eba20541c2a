"""Tiny transformers models for the tests: built from configs (no hub), with inputs for one
forward pass on the CPU, and the oracle of :mod:`oracle` adapted to them.

The adaptations, and why:

* a parameter held by a module next to its sub-modules (CLIP's ``logit_scale`` on the model
  itself) is not timed: a forward pre-hook times the call of the module, which for the model
  itself is the very start, not the use of the parameter (at the end);
* a tied output projection runs both first (as the embedding) and last (as the head), so its
  parameter is not timed either (its id is checked by the tests directly); the first and last
  modules must then hold the lowest and highest ids of what is timed;
* a module is timed for every parameter it uses, also one reported under another name
  (transformers 5 ties parameters, not modules: T5's ``encoder.embed_tokens`` holds
  ``shared.weight``);
* for towers and encoder-decoder models numbered in parallel, ids need only grow along the
  forward pass *within* each stack (the issue's criterion): ``groups`` are the module-path
  prefixes of the stacks.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping, Optional

import torch
import transformers
from torch import nn


TRANSFORMERS_5 = int(transformers.__version__.split(".")[0]) >= 5

VOCAB = 99
TEXT = dict(vocab_size=VOCAB, max_position_embeddings=64)
ENCODER = dict(TEXT, hidden_size=32, num_hidden_layers=3, num_attention_heads=2, intermediate_size=37)
DECODER = dict(ENCODER, num_key_value_heads=1)
VISION = dict(image_size=32, patch_size=8, num_channels=3)


@dataclass
class Case:
    """A tiny model: its class, config, input kind and the size of its id frame."""

    model_type: str
    cls: str
    config: dict
    inputs: str  # "text", "text2text", "image", "image_text", "audio", "speech2text", "llava"
    num_ids: int
    groups: Optional[tuple[str, ...]] = None  # stacks checked separately (towers)
    extra: dict = field(default_factory=dict)

    @property
    def name(self) -> str:
        return f"{self.model_type}-{self.cls}"

    def build(self) -> nn.Module:
        config = transformers.AutoConfig.for_model(self.model_type, **self.config)
        torch.manual_seed(0)
        return getattr(transformers, self.cls)._from_config(config).eval()

    def run(self, model: nn.Module) -> Any:
        return model(**make_inputs(self.inputs, model.config))


def make_inputs(kind: str, config) -> dict:
    g = torch.Generator().manual_seed(0)
    ids = lambda n=8: torch.randint(3, VOCAB, (1, n), generator=g)  # noqa: E731
    pixels = lambda: torch.randn(1, 3, 32, 32, generator=g)  # noqa: E731
    if kind == "text":
        return dict(input_ids=ids())
    if kind == "text2text":
        return dict(input_ids=ids(), decoder_input_ids=ids(5))
    if kind == "image":
        return dict(pixel_values=pixels())
    if kind == "image_text":
        return dict(input_ids=ids(), pixel_values=pixels())
    if kind == "audio":
        return dict(input_values=torch.randn(1, 400, generator=g))
    if kind == "speech2text":
        frames = 2 * config.max_source_positions
        return dict(input_features=torch.randn(1, config.num_mel_bins, frames, generator=g), decoder_input_ids=ids(4))
    if kind == "llava":
        image_tokens = (config.vision_config.image_size // config.vision_config.patch_size) ** 2
        input_ids = torch.cat([ids(2), torch.full((1, image_tokens), config.image_token_index), ids(3)], dim=1)
        return dict(input_ids=input_ids, pixel_values=pixels())
    raise ValueError(kind)


def _clip_like() -> dict:
    return dict(
        text_config=dict(TEXT, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=37),
        vision_config=dict(VISION, hidden_size=32, num_hidden_layers=3, num_attention_heads=2, intermediate_size=37),
    )


#: At least 25 architectures across the families of the issue, with sequence-classification,
#: causal-LM and image-classification heads (and the base models of the multimodal ones).
CASES = [
    # encoder-only, sequence classification: embeddings 0, 3 blocks, head 4
    Case("bert", "BertForSequenceClassification", ENCODER, "text", 5),
    Case("roberta", "RobertaForSequenceClassification", ENCODER, "text", 5),
    Case(
        "deberta-v2", "DebertaV2ForSequenceClassification",
        dict(ENCODER, relative_attention=True, position_buckets=8, norm_rel_ebd="layer_norm",
             pos_att_type=["p2c", "c2p"], position_biased_input=False, share_att_key=True),
        "text", 5,
    ),
    Case("electra", "ElectraForSequenceClassification", dict(ENCODER, embedding_size=16), "text", 5),
    Case("distilbert", "DistilBertForSequenceClassification",
         dict(TEXT, dim=32, n_layers=3, n_heads=2, hidden_dim=37), "text", 5),
    Case("albert", "AlbertForSequenceClassification", dict(ENCODER, embedding_size=16), "text", 3),
    Case("modernbert", "ModernBertForSequenceClassification",
         dict(ENCODER, global_attn_every_n_layers=2, local_attention=8, pad_token_id=0), "text", 5),
    Case("xlm-roberta", "XLMRobertaForTokenClassification", ENCODER, "text", 5),
    # decoder-only, causal LM (GPT-2 and Gemma tie their head to the embedding)
    Case("gpt2", "GPT2LMHeadModel", dict(TEXT, n_embd=32, n_layer=3, n_head=2, n_positions=64), "text", 5),
    Case("llama", "LlamaForCausalLM", DECODER, "text", 5),
    Case("mistral", "MistralForCausalLM", DECODER, "text", 5),
    Case("qwen2", "Qwen2ForCausalLM", DECODER, "text", 5),
    Case("qwen2", "Qwen2ForSequenceClassification", dict(DECODER, pad_token_id=0), "text", 5),
    Case("gemma", "GemmaForCausalLM", dict(DECODER, head_dim=16), "text", 5),
    Case("phi", "PhiForCausalLM", DECODER, "text", 5),
    Case("gpt_neox", "GPTNeoXForCausalLM", ENCODER, "text", 5),
    Case("mixtral", "MixtralForCausalLM",
         dict(DECODER, intermediate_size=64, num_local_experts=2, num_experts_per_tok=1), "text", 5),
    Case("opt", "OPTForCausalLM",
         dict(TEXT, hidden_size=32, num_hidden_layers=3, num_attention_heads=2, ffn_dim=37, word_embed_proj_dim=32),
         "text", 5),
    # encoder-decoder: the decoder continues after the encoder
    Case("t5", "T5ForConditionalGeneration",
         dict(vocab_size=VOCAB, d_model=32, d_kv=16, d_ff=37, num_layers=2, num_decoder_layers=3, num_heads=2),
         "text2text", 2 + 3 + 2, groups=("encoder", "decoder")),
    Case("bart", "BartForConditionalGeneration",
         dict(TEXT, d_model=32, encoder_layers=2, decoder_layers=3, encoder_attention_heads=2,
              decoder_attention_heads=2, encoder_ffn_dim=37, decoder_ffn_dim=37),
         "text2text", 2 + 3 + 2, groups=("model.encoder", "model.decoder")),
    Case("whisper", "WhisperForConditionalGeneration",
         dict(vocab_size=VOCAB, d_model=32, encoder_layers=2, decoder_layers=2, encoder_attention_heads=2,
              decoder_attention_heads=2, encoder_ffn_dim=37, decoder_ffn_dim=37, num_mel_bins=16,
              max_source_positions=16, max_target_positions=32, pad_token_id=0, bos_token_id=1,
              eos_token_id=2, decoder_start_token_id=1),
         "speech2text", 2 + 2 + 2, groups=("model.encoder", "model.decoder")),
    # vision, image classification
    Case("vit", "ViTForImageClassification",
         dict(VISION, hidden_size=32, num_hidden_layers=3, num_attention_heads=2, intermediate_size=37), "image", 5),
    Case("dinov2", "Dinov2ForImageClassification",
         dict(VISION, hidden_size=32, num_hidden_layers=3, num_attention_heads=2, mlp_ratio=2), "image", 5),
    Case("swin", "SwinForImageClassification",
         dict(image_size=32, patch_size=4, embed_dim=16, depths=[1, 2], num_heads=[1, 2], window_size=4),
         "image", 1 + 2 + 2),
    Case("convnext", "ConvNextForImageClassification",
         dict(image_size=32, hidden_sizes=[8, 16], depths=[1, 2], num_stages=2), "image", 1 + 2 + 2),
    Case("beit", "BeitForImageClassification",
         dict(VISION, hidden_size=32, num_hidden_layers=3, num_attention_heads=2, intermediate_size=37), "image", 5),
    # multimodal: two towers side by side (text 2 blocks, vision 3), projections at the head
    Case("clip", "CLIPModel", _clip_like(), "image_text", 3 + 2, groups=("text_model", "vision_model")),
    Case("siglip", "SiglipModel", _clip_like(), "image_text", 3 + 2, groups=("text_model", "vision_model")),
    Case(
        "llava", "LlavaForConditionalGeneration",
        dict(
            vision_config=dict(VISION, model_type="clip_vision_model", hidden_size=32, num_hidden_layers=2,
                               num_attention_heads=2, intermediate_size=37),
            text_config=dict(DECODER, model_type="llama"),
            image_token_index=VOCAB - 1,
            vision_feature_layer=-1,
        ),
        "llava", 3 + 2, groups=("model.vision_tower", "model.language_model"),
    ),
    # speech, sequence classification: the convolutional feature encoder is the stem
    Case("wav2vec2", "Wav2Vec2ForSequenceClassification",
         dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=37,
              conv_dim=(8, 8), conv_kernel=(10, 3), conv_stride=(5, 2), num_conv_pos_embeddings=8,
              num_conv_pos_embedding_groups=2),
         "audio", 2 + 2),
]


def block_stack_problems(model: nn.Module, ids: Mapping[str, int]) -> list[str]:
    """Stacks whose blocks do not each have their own id, increasing along the stack.

    A stack here is an innermost ``nn.ModuleList`` of ``GradientCheckpointingLayer`` s, found
    independently of the adapter; a stack entirely at id 0 (a convolutional feature encoder, part
    of the stem by design) is skipped.
    """
    from transformers.modeling_layers import GradientCheckpointingLayer

    def is_stack(module: nn.Module) -> bool:
        return isinstance(module, nn.ModuleList) and any(isinstance(m, GradientCheckpointingLayer) for m in module)

    problems = []
    for path, module in model.named_modules():
        if not is_stack(module):
            continue
        items = [f"{path}.{key}" for key, _ in module.named_children()]
        if any(is_stack(sub) for item in module for sub in item.modules()):
            continue  # not innermost: its items are stages of blocks
        per_item = [{i for n, i in ids.items() if n.startswith(item + ".")} for item in items]
        per_item = [found for found in per_item if found]
        if all(found == {0} for found in per_item):
            continue
        firsts = [min(found) for found in per_item]
        if not TRANSFORMERS_5 and all(holds_block_list(item) for item in module):
            # transformers 4.x: some stages are checkpointing layers whose blocks are not yet (Swin's
            # SwinStage holds plain SwinLayer s): the blocks of a stage have ids of their own, and
            # the stages follow one another
            ranges = [(min(found), max(found)) for found in per_item]
            if any(b[0] <= a[1] for a, b in zip(ranges, ranges[1:])):
                problems.append(f"{path}: ids per stage {[sorted(found) for found in per_item]}")
            continue
        if any(len(found) != 1 for found in per_item) or any(b <= a for a, b in zip(firsts, firsts[1:])):
            problems.append(f"{path}: ids per block {[sorted(found) for found in per_item]}")
    return problems


def holds_block_list(module: nn.Module) -> bool:
    """Whether a module holds an ``nn.ModuleList`` of modules of one class (a stage's blocks)."""
    return any(
        isinstance(sub, nn.ModuleList) and len(sub) > 0 and len({type(m) for m in sub}) == 1
        for sub in module.modules() if sub is not module
    )


