"""``scripts/transformers_zoo_sweep.py``: its model construction and records on a meta-device sample
of the zoo, and its command line."""

import importlib.util
import subprocess
import sys
from pathlib import Path

import transformers

transformers.logging.set_verbosity_error()
SWEEP = Path(__file__).resolve().parents[2] / "scripts" / "transformers_zoo_sweep.py"


# -- the zoo on the meta device ------------------------------------------------------------------------


def _sweep():
    spec = importlib.util.spec_from_file_location("transformers_zoo_sweep", SWEEP)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


#: model type -> (class, number of stacks, size of the id frame) with the sweep's 4-layer configs
META_SAMPLE = {
    "bert": ("BertForMaskedLM", 1, 6),
    "gpt2": ("GPT2LMHeadModel", 1, 6),
    "llama": ("LlamaForSequenceClassification", 1, 6),
    "qwen3_moe": ("Qwen3MoeForCausalLM", 1, 6),
    "mamba": ("MambaForCausalLM", 1, 6),
    "xlnet": ("XLNetLMHeadModel", 1, 6),
    "flaubert": ("FlaubertForSequenceClassification", 1, 6),
    "t5": ("T5ForConditionalGeneration", 2, 10),
    "bart": ("BartForSequenceClassification", 2, 10),
    "whisper": ("WhisperForAudioClassification", 1, 6),
    "detr": ("DetrForObjectDetection", 3, 26),
    "clip": ("CLIPModel", 2, 6),
    "siglip": ("SiglipForImageClassification", 1, 6),
    "blip-2": ("Blip2ForConditionalGeneration", 3, 6),
    "llava": ("LlavaForConditionalGeneration", 2, 6),
    "qwen2_vl": ("Qwen2VLForConditionalGeneration", 2, 6),
    "idefics": ("IdeficsForVisionText2Text", 2, 6),
    "swin": ("SwinForImageClassification", 1, 14),
    "hiera": ("HieraForImageClassification", 1, 26),
    "convnext": ("ConvNextForImageClassification", 1, 20),
    # The segmentation head builds its Hungarian-matching loss, which needs scipy (not a dependency).
    "mask2former": ("Mask2FormerModel", 2, 29),
    "hubert": ("HubertForCTC", 1, 6),
    "albert": ("AlbertForMaskedLM", 1, 3),
    "vit_mae": ("ViTMAEForPreTraining", 2, 10),
}


def test_meta_device_sample_of_the_zoo_is_mapped():
    sweep = _sweep()
    failures = {}
    for model_type, (cls, num_stacks, num_ids) in META_SAMPLE.items():
        model, _ = sweep.build(model_type, cls, layers=4)
        record = sweep.inspect_model(model, True)
        got = (record["mapped"], len(record["stacks"]), record["num_layers"])
        if got != (True, num_stacks, num_ids):
            failures[model_type] = (got, record["problems"], record["stacks"])
    assert not failures, failures


def test_sweep_script_runs():
    result = subprocess.run(
        [sys.executable, str(SWEEP), "--help"], capture_output=True, text=True, check=True
    )
    assert "--summary" in result.stdout
