"""The transformers adapter: layer ids of real tiny Hugging Face models, checked against a real
forward pass, and the options (towers, encoder-decoder,
tied head, stage granularity), PEFT and wrappers."""

import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch
import transformers
from torch import nn

from hf_models import CASES, Case, block_stack_problems
from hf_timm_layerdecay import AutoStrategy, auto_layer_decay, layer_ids
from hf_timm_layerdecay.adapters import transformers as adapter
from hf_timm_layerdecay.api import resolve_layer_map
from hf_timm_layerdecay.verify import forward_order_problems, tied_names

transformers.logging.set_verbosity_error()
ROOT = Path(__file__).resolve().parents[3]


def case(model_type: str, cls: str) -> Case:
    return next(c for c in CASES if c.model_type == model_type and c.cls == cls)


def ids_under(ids: dict, prefix: str) -> set:
    return {i for n, i in ids.items() if n.startswith(prefix)}


# -- the oracle on real tiny models --------------------------------------------------------------


@pytest.mark.parametrize("c", CASES, ids=lambda c: c.name)
def test_ids_follow_a_real_forward_pass(c):
    model = c.build()
    layer_map = resolve_layer_map(model)
    ids = layer_ids(model)
    assert set(ids) == {n for n, p in model.named_parameters() if p.requires_grad}  # every parameter mapped
    assert layer_map.num_layers == c.num_ids
    head = c.num_ids - 1
    # every id of the frame used, the stem at 0 unless it is a tied head; each block its own id
    assert set(range(1, head)) <= set(ids.values()) <= set(range(c.num_ids))
    assert 0 in set(layer_ids(model, AutoStrategy(tied_head="embedding")).values())
    assert not block_stack_problems(model, ids)
    problems = forward_order_problems(model, ids, c.run, c.groups, exempt=tied_names(model))
    assert not problems, "\n".join(problems)


def test_enough_architectures_are_checked_against_a_forward_pass():
    assert len({c.model_type for c in CASES}) >= 25
    heads = {c.cls for c in CASES}
    assert any(h.endswith("ForSequenceClassification") for h in heads)
    assert any(h.endswith("ForCausalLM") or h.endswith("LMHeadModel") for h in heads)
    assert any(h.endswith("ForImageClassification") for h in heads)


# -- what goes where ------------------------------------------------------------------------------


def test_bert_embeddings_blocks_and_head():
    model = case("bert", "BertForSequenceClassification").build()
    ids = layer_ids(model)
    assert ids_under(ids, "bert.embeddings.") == {0}
    assert [ids_under(ids, f"bert.encoder.layer.{k}.") for k in range(3)] == [{1}, {2}, {3}]
    assert ids_under(ids, "bert.pooler.") == ids_under(ids, "classifier.") == {4}


def test_embeddings_registered_after_the_blocks_are_still_the_stem():
    deberta = case("deberta-v2", "DebertaV2ForSequenceClassification").build()
    ids = layer_ids(deberta)
    # registered after `encoder.layer`, used before it (relative position embeddings and their norm)
    assert ids["deberta.encoder.rel_embeddings.weight"] == ids["deberta.encoder.LayerNorm.weight"] == 0
    electra = layer_ids(case("electra", "ElectraForSequenceClassification").build())
    assert electra["electra.embeddings_project.weight"] == 0  # embedding_size != hidden_size


def test_opt_final_norm_registered_before_the_layers_is_the_head():
    ids = layer_ids(case("opt", "OPTForCausalLM").build())
    assert ids["model.decoder.final_layer_norm.weight"] == 4
    assert ids["model.decoder.embed_positions.weight"] == 0


def test_wav2vec2_feature_encoder_is_the_stem():
    model = case("wav2vec2", "Wav2Vec2ForSequenceClassification").build()
    ids = layer_ids(model)
    assert ids_under(ids, "wav2vec2.feature_extractor.") == {0}
    assert ids_under(ids, "wav2vec2.feature_projection.") == ids_under(ids, "wav2vec2.encoder.pos_conv_embed.") == {0}
    assert [ids_under(ids, f"wav2vec2.encoder.layers.{k}.") for k in range(2)] == [{1}, {2}]
    assert ids_under(ids, "classifier.") == ids_under(ids, "projector.") == {3}


def test_swin_stage_by_stage_block_by_block_and_stage_granularity():
    model = case("swin", "SwinForImageClassification").build()
    ids = layer_ids(model)
    blocks = ["swin.encoder.layers.0.blocks.0.", "swin.encoder.layers.1.blocks.0.", "swin.encoder.layers.1.blocks.1."]
    assert [ids_under(ids, b) for b in blocks] == [{1}, {2}, {3}]
    assert ids_under(ids, "swin.encoder.layers.0.downsample.") == {1}  # runs after stage 0's last block
    stages = layer_ids(model, AutoStrategy(granularity="stage"))
    assert ids_under(stages, "swin.encoder.layers.1.") == {2} and stages["classifier.weight"] == 3


def test_convnext_without_checkpointing_layers_gets_blocks_from_the_structure():
    ids = layer_ids(case("convnext", "ConvNextForImageClassification").build())
    blocks = [f"convnext.encoder.stages.{stage}.layers.{block}." for stage, block in [(0, 0), (1, 0), (1, 1)]]
    assert [ids_under(ids, b) for b in blocks] == [{1}, {2}, {3}]
    assert ids_under(ids, "convnext.encoder.stages.1.downsampling_layer.") == {2}  # runs before stage 1's first block
    assert ids["classifier.weight"] == 4


def test_albert_shared_layer_group_is_one_id_with_a_note():
    model = case("albert", "AlbertForSequenceClassification").build()
    layer_map = resolve_layer_map(model)
    assert ids_under(layer_map.ids, "albert.encoder.albert_layer_groups.0.") == {1}
    assert layer_map.ids["albert.encoder.embedding_hidden_mapping_in.weight"] == 0
    assert layer_map.num_layers == 3
    assert any("num_hidden_layers=3 layers through 1 block(s)" in note for note in layer_map.notes)


def test_zamba_shared_transformer_is_one_id_with_a_note():
    config = transformers.AutoConfig.for_model(
        "zamba", hidden_size=32, num_hidden_layers=6, attn_layer_period=3, attn_layer_offset=2, num_attention_heads=2,
        num_key_value_heads=2, intermediate_size=37, vocab_size=99, mamba_d_state=4, mamba_dt_rank=4,
    )
    with torch.device("meta"):
        model = transformers.ZambaForCausalLM(config)  # hybrid layers 2 and 5 share one transformer
    layer_map = resolve_layer_map(model)
    shared = [n for n in layer_map.ids if ".shared_transf." in n]
    assert shared and {layer_map.ids[n] for n in shared} == {3}  # reported under (and first run by) layers.2
    assert any("'model.layers.2.shared_transf' is shared (also run as 'model.layers.5.shared_transf')" in note
               for note in layer_map.notes)
    own = {n: i for n, i in layer_map.ids.items() if n not in shared}
    assert [ids_under(own, f"model.layers.{k}.") for k in range(6)] == [{1}, {2}, {3}, {4}, {5}, {6}]


# -- encoder-decoder -------------------------------------------------------------------------------


def test_t5_decoder_continues_after_the_encoder_or_runs_in_parallel():
    model = case("t5", "T5ForConditionalGeneration").build()
    layer_map = resolve_layer_map(model)
    ids = layer_map.ids
    assert [ids_under(ids, f"encoder.block.{k}.") for k in range(2)] == [{1}, {2}]
    assert [ids_under(ids, f"decoder.block.{k}.") for k in range(3)] == [{3}, {4}, {5}]
    assert ids["encoder.final_layer_norm.weight"] == 2  # runs between the stacks: joins the encoder
    assert ids["decoder.final_layer_norm.weight"] == 6 == layer_map.num_layers - 1
    assert any("encoder 'encoder' ids 1-2, decoder 'decoder' ids 3-5" in n for n in layer_map.notes)
    parallel = resolve_layer_map(model, AutoStrategy(encoder_decoder="parallel"))
    assert [ids_under(parallel.ids, f"decoder.block.{k}.") for k in range(3)] == [{1}, {2}, {3}]
    assert ids_under(parallel.ids, "encoder.block.1.") == {2} and parallel.ids["encoder.final_layer_norm.weight"] == 2
    assert parallel.num_layers == 5 and parallel.ids["decoder.final_layer_norm.weight"] == 4


def test_whisper_conv_stem_and_decoder_head():
    ids = resolve_layer_map(case("whisper", "WhisperForConditionalGeneration").build()).ids  # with frozen positions
    assert ids_under(ids, "model.encoder.conv1.") == ids_under(ids, "model.encoder.embed_positions.") == {0}
    assert ids["model.encoder.layer_norm.weight"] == 2 and ids["model.decoder.layer_norm.weight"] == 5
    assert ids_under(ids, "model.decoder.layers.0.") == {3}


# -- towers ------------------------------------------------------------------------------------------


def test_clip_towers_by_their_own_depth_and_projections_at_the_head():
    model = case("clip", "CLIPModel").build()
    layer_map = resolve_layer_map(model)
    ids = layer_map.ids
    assert [ids_under(ids, f"text_model.encoder.layers.{k}.") for k in range(2)] == [{1}, {2}]
    assert [ids_under(ids, f"vision_model.encoder.layers.{k}.") for k in range(3)] == [{1}, {2}, {3}]
    assert ids_under(ids, "text_model.embeddings.") == ids_under(ids, "vision_model.embeddings.") == {0}
    assert ids["logit_scale"] == ids["visual_projection.weight"] == ids["text_model.final_layer_norm.weight"] == 4
    assert any("'vision_model' ids 1-3, 'text_model' ids 1-2" in n for n in layer_map.notes)


def test_tower_option_stretches_every_tower_onto_one_schedule():
    model = case("clip", "CLIPModel").build()
    on_vision = layer_ids(model, AutoStrategy(tower="vision_model"))
    assert [ids_under(on_vision, f"text_model.encoder.layers.{k}.") for k in range(2)] == [{2}, {3}]
    assert on_vision["logit_scale"] == 4
    on_text = resolve_layer_map(model, AutoStrategy(tower="text_model"))
    assert [ids_under(on_text.ids, f"vision_model.encoder.layers.{k}.") for k in range(3)] == [{1}, {2}, {2}]
    assert on_text.num_layers == 4
    with pytest.raises(ValueError, match="tower='audio_model'.*its towers: 'vision_model', 'text_model'"):
        layer_ids(model, AutoStrategy(tower="audio_model"))
    with pytest.raises(ValueError, match="names no tower of BertForSequenceClassification"):
        layer_ids(case("bert", "BertForSequenceClassification").build(), AutoStrategy(tower="vision_model"))


def test_llava_projector_and_lm_head_are_the_head():
    model = case("llava", "LlavaForConditionalGeneration").build()
    ids = layer_ids(model)
    # transformers < 5 keeps the CLIP vision encoder one level down, in vision_model
    tower = "model.vision_tower.vision_model." if any(".vision_tower.vision_model." in n for n in ids) else "model.vision_tower."
    assert ids_under(ids, tower + "encoder.layers.1.") == {2}
    assert ids_under(ids, "model.language_model.layers.2.") == {3}
    assert ids_under(ids, "model.multi_modal_projector.") == {4}
    assert ids["lm_head.weight"] == ids["model.language_model.norm.weight"] == 4
    assert ids["model.language_model.embed_tokens.weight"] == 0
    stretched = layer_ids(model, AutoStrategy(tower="language_model"))
    assert ids_under(stretched, tower + "encoder.layers.0.") == {2}


# -- tied head ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("model_type, cls, name", [
    ("gpt2", "GPT2LMHeadModel", "transformer.wte.weight"),
    ("gemma", "GemmaForCausalLM", "model.embed_tokens.weight"),
    ("t5", "T5ForConditionalGeneration", "shared.weight"),
])
def test_tied_head_gets_the_head_id_by_default(model_type, cls, name):
    model = case(model_type, cls).build()
    layer_map = resolve_layer_map(model)
    head = layer_map.num_layers - 1
    assert layer_map.ids[name] == head
    assert any(f"is tied to {name!r}" in note and "tied_head='head'" in note for note in layer_map.notes)
    assert layer_ids(model, AutoStrategy(tied_head="embedding"))[name] == 0
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        groups = auto_layer_decay(model, lr=1e-3, layer_decay=0.5)
    group = next(g for g in groups if name in g["param_names"])
    assert group["layer_id"] == head and group["lr"] == 1e-3


def test_untied_head_is_unaffected_by_the_option():
    model = case("llama", "LlamaForCausalLM").build()
    assert layer_ids(model) == layer_ids(model, AutoStrategy(tied_head="embedding"))
    assert layer_ids(model)["lm_head.weight"] == 4 and layer_ids(model)["model.embed_tokens.weight"] == 0


# -- PEFT and wrappers -------------------------------------------------------------------------------


@pytest.mark.filterwarnings("ignore:`is_gradient_checkpointing` is deprecated:FutureWarning")  # peft 0.21 on transformers 5
def test_lora_weights_get_their_block_id_and_frozen_weights_keep_the_frame():
    peft = pytest.importorskip("peft")
    base = case("bert", "BertForSequenceClassification").build()
    bare = layer_ids(base)
    config = peft.LoraConfig(r=2, target_modules=["query", "value"], modules_to_save=["classifier"])
    model = peft.get_peft_model(base, config)
    assert adapter.applies(model)
    layer_map = resolve_layer_map(model)
    ids = layer_ids(model)
    prefix = "base_model.model."
    lora = [n for n in ids if ".lora_" in n]
    assert len(lora) == 3 * 2 * 2  # 3 layers x (query, value) x (A, B)
    for name in lora:
        block = int(name.split("encoder.layer.")[1].split(".")[0])
        assert ids[name] == block + 1
    assert ids[prefix + "classifier.modules_to_save.default.weight"] == 4
    assert all(".lora_" in n or "modules_to_save" in n for n in ids)  # frozen base weights left out
    assert layer_map.num_layers == 5  # the frozen embeddings and pooler still fix the frame
    word_embeddings = "bert.embeddings.word_embeddings.weight"
    assert layer_map.ids[prefix + word_embeddings] == bare[word_embeddings] == 0
    groups = auto_layer_decay(model, lr=1e-3, layer_decay=0.5)
    assert sorted({g["layer_id"] for g in groups}) == [1, 2, 3, 4]


def test_wrapped_models_get_the_same_ids():
    model = case("llama", "LlamaForCausalLM").build()
    bare = layer_ids(model)
    assert layer_ids(nn.DataParallel(model)) == {"module." + n: i for n, i in bare.items()}
    assert layer_ids(torch.compile(model)) == {"_orig_mod." + n: i for n, i in bare.items()}
    from torch.distributed.algorithms._checkpoint.checkpoint_wrapper import apply_activation_checkpointing

    layer_class = transformers.models.llama.modeling_llama.LlamaDecoderLayer
    apply_activation_checkpointing(model, check_fn=lambda m: isinstance(m, layer_class))
    wrapped = layer_ids(model)
    assert any("_checkpoint_wrapped_module" in n for n in wrapped)
    assert {n.replace("._checkpoint_wrapped_module", ""): i for n, i in wrapped.items()} == bare


def test_applies_only_to_transformers_models_without_importing_it():
    assert not adapter.applies(nn.Linear(2, 2))
    code = (
        "import sys, torch; from hf_timm_layerdecay.adapters import transformers as a; "
        "before = 'transformers' in sys.modules; applies = a.applies(torch.nn.Linear(2, 2)); "
        "print(applies, before, 'transformers' in sys.modules)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    applies, before, after = result.stdout.split()
    assert applies == "False" and after == before  # asking a plain module imports nothing


def test_options_are_validated():
    with pytest.raises(ValueError, match="encoder_decoder must be one of"):
        AutoStrategy(encoder_decoder="interleaved")
    with pytest.raises(ValueError, match="tied_head must be one of"):
        AutoStrategy(tied_head="lm_head")
    with pytest.raises(ValueError, match="tower must be a non-empty string"):
        AutoStrategy(tower="")
