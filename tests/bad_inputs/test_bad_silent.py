"""Bad inputs that used to train the wrong thing without a word: each is now computed right,
refused with an error that names the fix, or warned about with ``warnings.warn``.

Every case here failed (gave the wrong result silently, or an obscure error) before the library
checked it.
"""

import json

import pytest
import torch
from torch import nn

from bad_cases import (
    Case, cli, error, exits, groups_are, ids_of, lrs_are, mlp, mlp_groups, quiet, result, run_case, set_workdir,
    tiny_bert, vit_meta, warning, workdir,
)
from hf_timm_layerdecay import (
    AutoStrategy, LayerDecayError, LayerDecayValueAssigner, LayerDecayWarning, LayerIdError, ParamGroupError,
    auto_layer_decay, check_param_groups, create_optimizer, get_num_layer_for_convnext, get_parameter_groups,
    layer_decay_report, layer_ids,
)
from models import OfficialConvNeXt

AREA = "Inputs that once trained the wrong thing silently"


def A(**kwargs):
    return auto_layer_decay(mlp(), **kwargs)


def _generator_groups_then_optimizer():
    model = mlp()
    groups = [{"params": model[0].parameters()}, {"params": model[2].parameters()}, {"params": model[4].parameters()}]
    check_param_groups(groups, model)
    return torch.optim.SGD(groups, lr=0.1)


def _tensors_in(optimizer):
    assert [len(g["params"]) for g in optimizer.param_groups] == [2, 2, 2]


def _sgd(model, drop_last=False):
    params = list(model.parameters())
    return torch.optim.SGD(params[:-1] if drop_last else params, lr=0.1)


class GRN(nn.Module):
    """ConvNeXt-V2's global response norm, with its parameters stored 4-D as in the official code."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.gamma = nn.Parameter(torch.zeros(1, 1, 1, dim))
        self.beta = nn.Parameter(torch.zeros(1, 1, 1, dim))


class V2Block(nn.Module):
    def __init__(self, dim: int = 8) -> None:
        super().__init__()
        self.pwconv1 = nn.Linear(dim, dim)
        self.grn = GRN(dim)
        self.pwconv2 = nn.Linear(dim, dim)


def _grn_model():
    return nn.Sequential(nn.Linear(4, 8), V2Block(), V2Block(), nn.Linear(8, 2))


def _grn_not_decayed(groups):
    decayed = {n for g in groups if g["weight_decay"] > 0 for n in g["param_names"]}
    assert decayed == {"0.weight", "1.pwconv1.weight", "1.pwconv2.weight", "2.pwconv1.weight", "2.pwconv2.weight", "3.weight"}


def _convnext_t_groups(values):
    model = OfficialConvNeXt(depths=(3, 3, 9, 3))
    assigner = LayerDecayValueAssigner(values)
    return get_parameter_groups(model, 0.05, get_num_layer=assigner.get_layer_id, get_layer_scale=assigner.get_scale)


def _convnext_t_ids(groups):
    ids = {n: g["layer_id"] for g in groups for n in g["param_names"]}
    assert sorted(set(ids.values())) == list(range(8))
    assert (ids["stages.2.8.dwconv.weight"], ids["stages.3.0.dwconv.weight"], ids["head.weight"]) == (5, 6, 7)


def _fc_blocks():
    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(4, 4)

    return nn.Sequential(Block(), Block())


def _trainer_with_optimizer():
    from transformers import TrainingArguments

    from hf_timm_layerdecay import LayerDecayTrainer

    model = tiny_bert()
    args = TrainingArguments(output_dir=str(workdir()), use_cpu=True, report_to=[])
    return LayerDecayTrainer(model=model, args=args, optimizers=(torch.optim.SGD(model.parameters(), lr=0.1), None),
                             layer_decay=0.5)


def _training_args(**kwargs):
    from hf_timm_layerdecay import LayerDecayTrainingArguments

    return LayerDecayTrainingArguments(output_dir=str(workdir()), use_cpu=True, report_to=[], **kwargs)


def _config(text):
    path = workdir() / "config.json"
    path.write_text(text)
    return str(path)


def _json_coverage_ok(out):
    assert json.loads(out)["coverage"]["ok"]


CASES = [
    # --- groups handed to the checks
    Case("check-generator-params", "`check_param_groups([{'params': m[0].parameters()}, ...], m)`, then `SGD(groups)`",
         _generator_groups_then_optimizer,
         result("the check passes and the optimizer still gets every tensor (2 per group; it got none)", _tensors_in)),
    Case("check-optimizer", "`check_param_groups(optimizer, model)`", lambda: check_param_groups(_sgd(mlp()), mlp()),
         error(ParamGroupError, "6 trainable parameter(s) in no group", "6 tensor(s) that are not parameters of the model")),
    Case("check-optimizer-own-model", "`check_param_groups(optimizer, model)` with the optimizer's own model",
         lambda: (lambda m: check_param_groups(_sgd(m, drop_last=True), m))(mlp()),
         error(ParamGroupError, "1 trainable parameter(s) in no group: 4.bias")),
    Case("check-dict", "`check_param_groups({'params': [...]}, model)` (one group, not a list)",
         lambda: (lambda m: check_param_groups({"params": list(m.parameters())}, m))(mlp()),
         error(TypeError, "must be a list of parameter-group dicts or an optimizer, got dict", "wrap it in a list")),
    Case("check-string", '`check_param_groups("groups", model)`', lambda: check_param_groups("groups", mlp()),
         error(TypeError, "must be a list of parameter-group dicts or an optimizer, got str")),
    Case("check-no-params", "`check_param_groups([{'lr': 0.1}], model)`", lambda: check_param_groups([{"lr": 0.1}], mlp()),
         error(ParamGroupError, "groups[0] (unnamed) has no 'params' entry")),
    Case("check-model-none", "`check_param_groups(groups, None)`", lambda: check_param_groups([{"params": []}], None),
         error(TypeError, "model must be a torch.nn.Module, got NoneType")),
    Case("report-optimizer", "`layer_decay_report(optimizer, model)`",
         lambda: (lambda m: layer_decay_report(create_optimizer(m, "sgd", lr=1.0, layer_decay=0.5, momentum=0), m))(mlp()),
         result("one row per group, with the real lrs; coverage ok",
                lambda r: ([row.lr for row in r.rows] == [0.25, 0.25, 0.5, 0.5, 1.0, 1.0]) and r.coverage.ok or pytest.fail(str(r)))),
    Case("report-notes-string", '`layer_decay_report(groups, notes="check")`',
         lambda: layer_decay_report(A(lr=1.0, layer_decay=0.5), notes="check").notes,
         result("one note, not one per character", lambda notes: notes == ("check",) or pytest.fail(str(notes)))),
    Case("report-negative-lr", "`layer_decay_report(groups without lr, lr=-1)`",
         lambda: layer_decay_report(quiet(lambda: A(layer_decay=0.5)), lr=-1),
         error(ValueError, "lr must be a finite number > 0, got -1")),
    Case("report-negative-names", "`report.table(max_names=-2)`",
         lambda: layer_decay_report(A(lr=1.0, layer_decay=0.5)).table(max_names=-2),
         error(ValueError, "max_names must be an int >= 0, got -2")),
    # --- the post's API
    Case("assigner-default-rule-vit", "`LayerDecayValueAssigner(values)` (no rule) as BEiT's drop-in on a ViT",
         lambda: (lambda a: get_parameter_groups(vit_meta(), get_num_layer=a.get_layer_id, get_layer_scale=a.get_scale))(
             LayerDecayValueAssigner([0.5 ** (13 - i) for i in range(14)])),
         error(LayerIdError, "'cls_token' is not a ConvNeXt parameter", "get_num_layer_for_vit(name, len(values))")),
    Case("assigner-number", "`LayerDecayValueAssigner(0.75)`", lambda: LayerDecayValueAssigner(0.75),
         error(TypeError, "takes one scale per layer id, got 0.75", "[d ** (n - 1 - i) for i in range(n)]")),
    Case("assigner-convnext-t", "`LayerDecayValueAssigner` with 8 values (ConvNeXt-T's frame) on a ConvNeXt-T",
         lambda: _convnext_t_groups([0.5 ** (7 - i) for i in range(8)]),
         result("ids 0-7 without gaps: stage 2 takes 3-5, stage 3 is 6, the head 7", _convnext_t_ids)),
    Case("convnext-rule-on-t", "`get_num_layer_for_convnext` (S/B/L/XL's 14 ids) on a ConvNeXt-T",
         lambda: get_parameter_groups(OfficialConvNeXt(depths=(3, 3, 9, 3)), get_num_layer=get_num_layer_for_convnext),
         warning(LayerDecayWarning, "layer ids 6..11 hold no parameter (6 of 14)", "one more factor of the decay per empty id")),
    Case("convnext-rule-frame", '`get_num_layer_for_convnext("stages.2.8.dwconv.weight", num_max_layer=6)`',
         lambda: [get_num_layer_for_convnext(n, num_max_layer=6) for n in ("stages.2.8.dwconv.weight", "stages.3.0.dwconv.weight", "head.weight")],
         result("ConvNeXt-T's frame: 5, 6, 7", lambda ids: ids == [5, 6, 7] or pytest.fail(str(ids)))),
    Case("seed-negative-lr", "`get_parameter_groups(model, lr=-1)`", lambda: get_parameter_groups(mlp(), lr=-1),
         error(ValueError, "lr must be a finite number > 0, got -1")),
    Case("seed-negative-wd", "`get_parameter_groups(model, weight_decay=-0.5)`", lambda: get_parameter_groups(mlp(), weight_decay=-0.5),
         error(ValueError, "weight_decay must be a finite number >= 0, got -0.5")),
    Case("seed-nan-wd", "`get_parameter_groups(model, weight_decay=nan)`", lambda: get_parameter_groups(mlp(), weight_decay=float("nan")),
         error(ValueError, "weight_decay must be a finite number >= 0, got nan")),
    Case("seed-skip-typo", '`get_parameter_groups(model, skip_list=["0.wieght"])`',
         lambda: get_parameter_groups(mlp(), skip_list=["0.wieght"]),
         warning(UserWarning, "no_weight_decay entries match no parameter: ['0.wieght']")),
    Case("seed-model-string", '`get_parameter_groups("model")`', lambda: get_parameter_groups("model"),
         error(TypeError, "model must be a torch.nn.Module, got str")),
    # --- weight decay
    Case("grn-gamma-beta", "ConvNeXt-V2's GRN `gamma` / `beta`, stored `(1, 1, 1, C)`",
         lambda: auto_layer_decay(_grn_model(), lr=1.0, layer_decay=0.5),
         result("not weight-decayed, as in ConvNeXt-V2's recipe; the matrices are", _grn_not_decayed)),
    Case("nwd-none", "`no_weight_decay=None`", lambda: A(lr=1.0, layer_decay=0.5, no_weight_decay=None),
         result("no extra names", mlp_groups())),
    Case("nwd-int-entry", "`no_weight_decay=[0]`", lambda: A(lr=1.0, no_weight_decay=[0]),
         error(TypeError, "no-weight-decay entries must be strings", "got 0 (int)")),
    # --- layer_decay and the scales
    Case("seq-long", "`layer_decay=[.1, .2, .3, .4, .5, .6, 1.0]` on a 3-id model",
         lambda: A(lr=1.0, layer_decay=[0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 1.0]),
         error(LayerDecayError, "has 7 values but the model has 3 layer ids", "values[2]=0.3, not the 1.0 written last")),
    Case("decay-set", "`layer_decay={0.9, 0.1, 0.5}` (a set: no order)", lambda: A(lr=1.0, layer_decay={0.9, 0.1, 0.5}),
         error(LayerDecayError, "layer_decay must be a float, a sequence of per-layer scales or a callable")),
    Case("decay-dict", "`layer_decay={0: 0.25, 1: 0.5, 2: 1.0}`", lambda: A(lr=1.0, layer_decay={0: 0.25, 1: 0.5, 2: 1.0}),
         error(LayerDecayError, "layer_decay is a mapping", "list(mapping.values())")),
    Case("decay-tensor", "`layer_decay=torch.tensor(0.5)`", lambda: A(lr=1.0, layer_decay=torch.tensor(0.5)),
         result("read as 0.5", mlp_groups())),
    Case("decay-callable-raises", "`layer_decay=lambda i: [1.0, 0.5][i]` on a 3-id model",
         lambda: A(lr=1.0, layer_decay=lambda i: [1.0, 0.5][i]),
         error(LayerDecayError, "layer_decay(2) raised IndexError")),
    Case("min-scale-above-one", "`min_scale=2`", lambda: A(lr=1.0, layer_decay=0.5, min_scale=2),
         error(LayerDecayError, "min_scale=2 is above 1", "use a value in [0, 1]")),
    Case("off-bogus-strategy", '`layer_decay=None, strategy="bogus"`', lambda: A(lr=1.0, layer_decay=None, strategy="bogus"),
         error(ValueError, "unknown strategy 'bogus'")),
    Case("off-negative-min-scale", "`layer_decay=None, min_scale=-1`", lambda: A(lr=1.0, layer_decay=None, min_scale=-1),
         error(LayerDecayError, "min_scale must be a finite number >= 0, got -1")),
    Case("flag-string", '`allow_decay_above_one="no"`', lambda: A(lr=1.0, layer_decay=1.5, allow_decay_above_one="no"),
         error(TypeError, "allow_decay_above_one must be True or False, got 'no'")),
    Case("flag-string-model-nwd", '`model_no_weight_decay="no"`', lambda: A(lr=1.0, model_no_weight_decay="no"),
         error(TypeError, "model_no_weight_decay must be True or False, got 'no'")),
    # --- strategies
    Case("pattern-never-matches", '`strategy={r"fc": 1, r".*": "last"}` (re.match: "fc" never matches "0.fc.weight")',
         lambda: auto_layer_decay(_fc_blocks(), lr=1.0, layer_decay=0.5, strategy={r"fc": 1, r".*": "last"}),
         warning(LayerDecayWarning, "layer patterns that match no parameter: ['fc']", "anchors at the start of the name")),
    Case("pattern-one-layer", "the same: every parameter in one layer",
         lambda: auto_layer_decay(_fc_blocks(), lr=1.0, layer_decay=0.5, strategy={r"fc": 1, r".*": "last"}),
         warning(LayerDecayWarning, "all 4 trainable parameters have layer id 0: the layer decay has no effect")),
    Case("pattern-bad-regex", '`strategy={r"blocks.(": 1}`', lambda: layer_ids(mlp(), {r"blocks.(": 1}),
         error(LayerIdError, "layer pattern 'blocks.(' is not a valid regular expression")),
    Case("pattern-key-int", "`strategy={0: 0}`", lambda: layer_ids(mlp(), {0: 0}),
         error(LayerIdError, "layer pattern 0 must be a string")),
    Case("rule-gaps", '`strategy=lambda name: 0 if name.startswith("0.") else 100`',
         lambda: A(lr=1.0, layer_decay=0.5, strategy=lambda name: 0 if name.startswith("0.") else 100),
         warning(LayerDecayWarning, "layer ids 1..99 hold no parameter (99 of 101)")),
    Case("single-module", "`auto_layer_decay(nn.Linear(3, 3), lr=1e-3, layer_decay=0.5)`",
         lambda: auto_layer_decay(nn.Linear(3, 3), lr=1e-3, layer_decay=0.5),
         warning(LayerDecayWarning, "all 2 trainable parameters have layer id 0: the layer decay has no effect",
                 check=lrs_are(1e-3, 1e-3))),
    Case("tower-on-plain-model", '`AutoStrategy(tower="vision_model")` on a model without towers',
         lambda: layer_ids(mlp(), AutoStrategy(tower="vision_model")),
         error(ValueError, "AutoStrategy(tower='vision_model') has no effect on Sequential")),
    Case("tower-on-timm", '`AutoStrategy(tower="no_such_tower")` on a timm ViT',
         lambda: layer_ids(vit_meta(), AutoStrategy(tower="no_such_tower")),
         error(ValueError, "has no effect on VisionTransformer, which the timm rule numbers")),
    Case("auto-strategy-string-flag", '`AutoStrategy(family_adapters="False")`', lambda: AutoStrategy(family_adapters="False"),
         error(TypeError, "AutoStrategy.family_adapters must be True or False, got 'False'")),
    # --- optimizer and Trainer
    Case("meta-create-optimizer", "`create_optimizer(model_on_meta, lr=1e-3)`",
         lambda: create_optimizer(mlp().to("meta"), "adamw", lr=1e-3),
         error(ValueError, "is on the meta device", "Create the optimizer after the model is materialised")),
    Case("create-optimizer-lr-none", "`create_optimizer(model, lr=None)`", lambda: create_optimizer(mlp(), "adamw", lr=None),
         error(ValueError, "lr must be a finite number > 0, got None")),
    Case("trainer-decay-and-optimizer", "`LayerDecayTrainer(..., layer_decay=0.5, optimizers=(optimizer, None))`",
         _trainer_with_optimizer, error(ValueError, "a ready optimizer", "the decay would be lost")),
    Case("args-strategy-python", '`LayerDecayTrainingArguments(layer_decay_strategy="bogus")`',
         lambda: _training_args(layer_decay_strategy="bogus"),
         error(ValueError, "unknown strategy 'bogus'; use one of ['auto', 'structural']")),
    Case("args-min-scale-python", "`LayerDecayTrainingArguments(layer_decay=0.8, layer_decay_min_scale=2)`",
         lambda: _training_args(layer_decay=0.8, layer_decay_min_scale=2.0),
         error(LayerDecayError, "min_scale=2.0 is above 1")),
    Case("args-bool-decay", "`LayerDecayTrainingArguments(layer_decay=True)`", lambda: _training_args(layer_decay=True),
         error(LayerDecayError, "layer_decay must be a float, a sequence of per-layer scales or a callable, got True")),
    # --- command line
    Case("cli-bad-config", "`inspect config.json` holding `not json`", lambda: cli("inspect", _config("not json")),
         exits(2, "is not a usable transformers config", "JSONDecodeError")),
    Case("cli-unknown-model-type", '`inspect config.json` with `{"model_type": "nope"}`',
         lambda: cli("inspect", _config('{"model_type": "nope"}')),
         exits(2, "is not a usable transformers config", "it needs a 'model_type' that this transformers knows")),
    Case("cli-plot-missing-folder", "`inspect vit_tiny_patch16_224 --plot missing/x.png`",
         lambda: cli("inspect", "vit_tiny_patch16_224", "--plot", str(workdir() / "missing" / "x.png")),
         exits(2, "--plot", "does not exist")),
    Case("cli-pretrained-tag", "`inspect vit_tiny_patch16_224.augreg_in21k --json`",
         lambda: cli("inspect", "vit_tiny_patch16_224.augreg_in21k", "--json"),
         exits(0, '"model": "vit_tiny_patch16_224.augreg_in21k"', stream="out", check=_json_coverage_ok)),
    Case("cli-unknown-tag", "`inspect vit_tiny_patch16_224.nosuchtag`", lambda: cli("inspect", "vit_tiny_patch16_224.nosuchtag"),
         exits(2, "timm has no pretrained tag 'nosuchtag' for vit_tiny_patch16_224", "augreg_in21k")),
    Case("cli-hub-id", "`inspect bert-base-uncased`", lambda: cli("inspect", "bert-base-uncased"),
         exits(2, "looks like a Hugging Face hub id", "use its model type ('bert') or a local config.json")),
    Case("cli-upper-case", "`inspect VIT_TINY_PATCH16_224`", lambda: cli("inspect", "VIT_TINY_PATCH16_224"),
         exits(2, "Close matches: vit_tiny_patch16_224")),
    Case("cli-names-zero", "`inspect vit_tiny_patch16_224 --names 0`", lambda: cli("inspect", "vit_tiny_patch16_224", "--names", "0"),
         exits(0, "(3 names)", stream="out")),
    Case("cli-names-negative", "`inspect vit_tiny_patch16_224 --names -1`", lambda: cli("inspect", "vit_tiny_patch16_224", "--names", "-1"),
         exits(2, "--names must be >= 0, got -1")),
    Case("cli-title-options", "`inspect vit_tiny_patch16_224 --granularity stage --normalize-depth 12`",
         lambda: cli("inspect", "vit_tiny_patch16_224", "--granularity", "stage", "--normalize-depth", "12"),
         exits(0, "granularity=stage", "normalize_depth=12", stream="out")),
]


@pytest.mark.parametrize("case", CASES, ids=ids_of(CASES))
def test_bad_input(case, tmp_path):
    set_workdir(tmp_path)
    run_case(case)
