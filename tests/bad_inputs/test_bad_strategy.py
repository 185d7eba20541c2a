"""Bad inputs: ``layer_ids`` and the ``strategy`` argument (names, ``AutoStrategy``, callable
rules, ``{regex: id}`` patterns)."""

import numpy as np
import pytest
import torch
from dataclasses import FrozenInstanceError
from torch import nn

from bad_cases import Case, equals, error, frozen, ids_of, mlp, result, run_case, set_workdir, tiny_bert, vit_meta
from hf_timm_layerdecay import AutoStrategy, LayerIdError, get_num_layer_for_vit, layer_ids

AREA = "layer_ids and strategy: names, AutoStrategy, rules, patterns"

MLP_IDS = {"0.weight": 0, "0.bias": 0, "2.weight": 1, "2.bias": 1, "4.weight": 2, "4.bias": 2}


def L(strategy):
    return layer_ids(mlp(), strategy)


def _tiny_clip():
    from transformers import CLIPConfig, CLIPModel

    text = dict(vocab_size=99, hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=32,
                max_position_embeddings=16, bos_token_id=0, eos_token_id=1, pad_token_id=1)
    vision = dict(image_size=16, patch_size=8, hidden_size=16, num_hidden_layers=3, num_attention_heads=2, intermediate_size=32)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return CLIPModel(CLIPConfig(text_config=text, vision_config=vision, projection_dim=8))


def _vit_ids(ids):
    assert max(ids.values()) == 13 and len(ids) == 152
    assert (ids["cls_token"], ids["patch_embed.proj.weight"], ids["blocks.0.attn.qkv.weight"],
            ids["blocks.11.mlp.fc2.weight"], ids["head.weight"]) == (0, 0, 1, 12, 13)


def _bert_ids(ids):
    assert (ids["bert.embeddings.word_embeddings.weight"], ids["bert.encoder.layer.0.attention.self.query.weight"],
            ids["bert.encoder.layer.1.output.dense.weight"], ids["bert.pooler.dense.weight"], ids["classifier.weight"]) == (0, 1, 2, 3, 3)


_UNKNOWN = "unknown strategy"
_KIND = "strategy must be 'auto', 'structural', an AutoStrategy, a callable or a mapping"
_NOT_INT = "must be a non-negative int"
_NEGATIVE = "is negative (-1); ids start at 0"
_UNMATCHED = "match none of the layer patterns"

CASES = [
    # --- layer_ids: the model
    Case("ids-model-str", '`layer_ids("bert")`', lambda: layer_ids("bert"),
         error(TypeError, "model must be a torch.nn.Module", "got str")),
    Case("ids-model-none", "`layer_ids(None)`", lambda: layer_ids(None), error(TypeError, "model must be a torch.nn.Module")),
    Case("ids-mlp", "`layer_ids(model)`, a 3-layer MLP", lambda: layer_ids(mlp()),
         result("ids 0 / 1 / 2 in forward order", equals(MLP_IDS))),
    Case("ids-all-frozen", "`layer_ids(model)`, every parameter frozen", lambda: layer_ids(frozen(mlp(), 0, 2, 4)),
         result("`{}`: only trainable parameters are listed", equals({}))),
    Case("ids-empty", "`layer_ids(nn.Sequential())`", lambda: layer_ids(nn.Sequential()), result("`{}`", equals({}))),
    Case("ids-stem-frozen", "`layer_ids(model)`, first layer frozen", lambda: layer_ids(frozen(mlp(), 0)),
         result("frozen names left out, the rest keep ids 1 and 2",
                equals({"2.weight": 1, "2.bias": 1, "4.weight": 2, "4.bias": 2}))),
    Case("ids-dataparallel", "`layer_ids(nn.DataParallel(model))`", lambda: layer_ids(nn.DataParallel(mlp())),
         result("the bare model's ids under the wrapper's names (`module.0.weight`: 0)",
                equals({f"module.{k}": v for k, v in MLP_IDS.items()}))),
    Case("ids-vit-meta", "`layer_ids(vit)`, timm ViT-Tiny on the meta device", lambda: layer_ids(vit_meta()),
         result("14 ids: tokens and patch embedding 0, `blocks.i` i + 1, head 13", _vit_ids)),
    Case("ids-bert", "`layer_ids(bert)`, a 2-block BERT classifier", lambda: layer_ids(tiny_bert()),
         result("embeddings 0, `encoder.layer.i` i + 1, pooler and classifier 3", _bert_ids)),
    # --- strategy by name
    Case("strategy-unknown", '`strategy="bogus"`', lambda: L("bogus"),
         error(ValueError, _UNKNOWN, "'bogus'", "['auto', 'structural']")),
    Case("strategy-case", '`strategy="AUTO"` (names are case-sensitive)', lambda: L("AUTO"),
         error(ValueError, _UNKNOWN, "'AUTO'")),
    Case("strategy-int", "`strategy=5`", lambda: L(5), error(TypeError, _KIND, "got 5")),
    Case("strategy-none", "`strategy=None`", lambda: L(None), error(TypeError, _KIND, "got None")),
    Case("strategy-pairs", '`strategy=[("0", 0)]` (pairs, not a mapping)', lambda: L([("0", 0)]), error(TypeError, _KIND)),
    Case("strategy-structural", '`strategy="structural"` on the MLP', lambda: L("structural"), result("ids 0 / 1 / 2", equals(MLP_IDS))),
    # --- AutoStrategy
    Case("auto-granularity", '`AutoStrategy(granularity="blocks")`', lambda: AutoStrategy(granularity="blocks"),
         error(ValueError, "AutoStrategy.granularity must be one of ('block', 'stage')", "got 'blocks'")),
    Case("auto-granularity-none", "`AutoStrategy(granularity=None)`", lambda: AutoStrategy(granularity=None),
         error(ValueError, "AutoStrategy.granularity must be one of", "got None")),
    Case("auto-encoder-decoder", '`AutoStrategy(encoder_decoder="serial")`', lambda: AutoStrategy(encoder_decoder="serial"),
         error(ValueError, "AutoStrategy.encoder_decoder must be one of ('sequential', 'parallel')", "got 'serial'")),
    Case("auto-tied-head", '`AutoStrategy(tied_head="lm_head")`', lambda: AutoStrategy(tied_head="lm_head"),
         error(ValueError, "AutoStrategy.tied_head must be one of ('head', 'embedding')", "got 'lm_head'")),
    Case("auto-tower-empty", '`AutoStrategy(tower="")`', lambda: AutoStrategy(tower=""),
         error(ValueError, "AutoStrategy.tower must be a non-empty string", "got ''")),
    Case("auto-tower-int", "`AutoStrategy(tower=5)`", lambda: AutoStrategy(tower=5),
         error(ValueError, "AutoStrategy.tower must be a non-empty string", "got 5")),
    Case("auto-misspelled", '`AutoStrategy(granularty="stage")` (misspelled field)', lambda: AutoStrategy(granularty="stage"),
         error(TypeError, "unexpected keyword argument 'granularty'")),
    Case("auto-frozen", '`strategy.granularity = "stage"` on an `AutoStrategy`',
         lambda: setattr(AutoStrategy(), "granularity", "stage"), error(FrozenInstanceError, "cannot assign to field 'granularity'")),
    Case("auto-tower-bert", '`AutoStrategy(tower="vision_model")` on BERT (no towers)',
         lambda: layer_ids(tiny_bert(), AutoStrategy(tower="vision_model")),
         error(ValueError, "AutoStrategy(tower='vision_model') names no tower of BertForSequenceClassification",
               "a single stack of blocks")),
    Case("auto-tower-unknown", '`AutoStrategy(tower="audio_model")` on CLIP',
         lambda: layer_ids(_tiny_clip(), AutoStrategy(tower="audio_model")),
         error(ValueError, "names no tower of CLIPModel", "'vision_model', 'text_model'")),
    Case("auto-stage-flat", '`AutoStrategy(granularity="stage")` on a model without stages (MLP)',
         lambda: L(AutoStrategy(granularity="stage")), result("same ids as block granularity: 0 / 1 / 2", equals(MLP_IDS))),
    Case("auto-parallel-plain", '`AutoStrategy(encoder_decoder="parallel")` on a model without a decoder',
         lambda: L(AutoStrategy(encoder_decoder="parallel")),
         error(ValueError, "AutoStrategy(encoder_decoder='parallel') has no effect on Sequential", "Leave them at their defaults")),
    # --- a callable rule
    Case("rule-negative", "`strategy=lambda name: -1`", lambda: L(lambda name: -1),
         error(LayerIdError, "layer id for parameter '0.weight'", _NEGATIVE)),
    Case("rule-float", "`strategy=lambda name: 1.5`", lambda: L(lambda name: 1.5),
         error(LayerIdError, "'0.weight'", _NOT_INT, "got 1.5 (float)")),
    Case("rule-whole-float", "`strategy=lambda name: 1.0`", lambda: L(lambda name: 1.0),
         error(LayerIdError, _NOT_INT, "got 1.0 (float)", "fix the rule")),
    Case("rule-bool", "`strategy=lambda name: True`", lambda: L(lambda name: True), error(LayerIdError, _NOT_INT, "got True (bool)")),
    Case("rule-str", '`strategy=lambda name: "1"`', lambda: L(lambda name: "1"), error(LayerIdError, _NOT_INT, "got '1' (str)")),
    Case("rule-none", "`strategy=lambda name: None` (forgot `return`)", lambda: L(lambda name: None),
         error(LayerIdError, _NOT_INT, "got None (NoneType)")),
    Case("rule-raises", "`strategy=lambda name: {}[name]` (the rule raises `KeyError`)", lambda: L(lambda name: {}[name]),
         error(LayerIdError, "layer rule", "failed on parameter '0.weight'")),
    Case("rule-numpy-int", "`strategy=lambda name: np.int64(...)`", lambda: L(lambda name: np.int64(int(name[0]) // 2)),
         result("numpy integers accepted: ids 0 / 1 / 2", equals(MLP_IDS))),
    Case("rule-wrapped-names", "a rule on `nn.DataParallel(model)`, reading `int(name[0])`",
         lambda: layer_ids(nn.DataParallel(mlp()), lambda name: int(name[0]) // 2),
         result("the rule gets the bare names (`0.weight`), the result the wrapper's",
                equals({f"module.{k}": v for k, v in MLP_IDS.items()}))),
    Case("rule-vit-too-small", "`lambda n: get_num_layer_for_vit(n, 12)` on a 12-block ViT (needs 14)",
         lambda: layer_ids(vit_meta(), lambda n: get_num_layer_for_vit(n, 12)),
         error(LayerIdError, "'blocks.10.norm1.weight' is block 10 but num_max_layer=12 leaves room for 10 blocks",
               "pass num_max_layer = number of blocks + 2")),
    # --- a {regex: id} mapping
    Case("pattern-unmatched", '`strategy={r"0\\.": 0}` (no pattern for the rest)', lambda: L({r"0\.": 0}),
         error(LayerIdError, "4 parameter(s) match none of the layer patterns", "2.weight", "{r'.*': 'last'}")),
    Case("pattern-empty", "`strategy={}`", lambda: L({}), error(LayerIdError, "6 parameter(s) " + _UNMATCHED)),
    Case("pattern-negative", '`{r"0\\.": -1, r".*": "last"}`', lambda: L({r"0\.": -1, ".*": "last"}),
         error(LayerIdError, "<pattern", _NEGATIVE)),
    Case("pattern-word", '`{r"0\\.": "first", r".*": "last"}` (only "last" is a word)', lambda: L({r"0\.": "first", ".*": "last"}),
         error(LayerIdError, "<pattern", _NOT_INT, "got 'first'")),
    Case("pattern-float", '`{r"0\\.": 1.5, r".*": "last"}`', lambda: L({r"0\.": 1.5, ".*": "last"}),
         error(LayerIdError, _NOT_INT, "got 1.5")),
    Case("pattern-bool", '`{r"0\\.": True, r".*": "last"}`', lambda: L({r"0\.": True, ".*": "last"}),
         error(LayerIdError, _NOT_INT, "got True")),
    Case("pattern-none", '`{r"0\\.": None, r".*": "last"}`', lambda: L({r"0\.": None, ".*": "last"}),
         error(LayerIdError, _NOT_INT, "got None")),
    Case("pattern-capture-word", '`{r"\\d\\.(\\w+)": 0}` (the group captures `weight`, not a number)',
         lambda: L({r"\d\.(\w+)": 0}),
         error(LayerIdError, "captured 'weight' from parameter '0.weight'", "must capture a block number such as (\\d+)")),
    Case("pattern-capture", '`{r"0\\.": 0, r"(\\d)\\.": 0, r".*": "last"}`', lambda: L({r"0\.": 0, r"(\d)\.": 0, ".*": "last"}),
         result("the captured number is added: ids 0 / 2 / 4 (the module indices)",
                equals({"0.weight": 0, "0.bias": 0, "2.weight": 2, "2.bias": 2, "4.weight": 4, "4.bias": 4}))),
    Case("pattern-last", '`{r"0\\.": 0, r"2\\.": 1, r".*": "last"}`', lambda: L({r"0\.": 0, r"2\.": 1, ".*": "last"}),
         result('"last" is one past every other id: 0 / 1 / 2', equals(MLP_IDS))),
]


@pytest.mark.parametrize("case", CASES, ids=ids_of(CASES))
def test_bad_input(case, tmp_path):
    set_workdir(tmp_path)
    run_case(case)
