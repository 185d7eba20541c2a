"""Bad inputs: ``LayerDecayTrainingArguments`` (in Python and through ``HfArgumentParser``) and
``LayerDecayTrainer``'s ``layer_decay`` and optimizer choices. The model is a 2-block BERT
classifier (ids 0-3); ``create_optimizer()`` is called, nothing is trained."""

import contextlib
import io

import pytest
import torch
from torch import nn

from bad_cases import Case, equals, error, ids_of, result, run_case, set_workdir, tiny_bert, warning, workdir
from hf_timm_layerdecay import LayerDecayError

AREA = "LayerDecayTrainer and LayerDecayTrainingArguments"

#: lr of layers 0..3 at head lr 1e-3 and layer decay 0.5
HALVING = {0: 1.25e-4, 1: 2.5e-4, 2: 5e-4, 3: 1e-3}
#: the momentum a plain Trainer gives optim="sgd", optim_args="momentum=0.9": transformers 4.x ignores optim_args for sgd
SGD_MOMENTUM = 0.9 if int(__import__("transformers").__version__.split(".")[0]) >= 5 else 0


def TA(**kwargs):
    from transformers import TrainingArguments

    kwargs.setdefault("learning_rate", 1e-3)
    kwargs.setdefault("weight_decay", 0.01)
    return TrainingArguments(output_dir=str(workdir()), use_cpu=True, report_to=[], **kwargs)


def LA(**kwargs):
    from hf_timm_layerdecay import LayerDecayTrainingArguments

    kwargs.setdefault("learning_rate", 1e-3)
    kwargs.setdefault("weight_decay", 0.01)
    return LayerDecayTrainingArguments(output_dir=str(workdir()), use_cpu=True, report_to=[], **kwargs)


def trainer(args=None, model=None, **kwargs):
    from hf_timm_layerdecay import LayerDecayTrainer

    return LayerDecayTrainer(model=tiny_bert() if model is None else model, args=TA() if args is None else args, **kwargs)


def optimizer(args=None, **kwargs):
    return trainer(args, **kwargs).create_optimizer()


def parse(*argv):
    """``HfArgumentParser(LayerDecayTrainingArguments)`` on ``argv``: the arguments, or
    ``SystemExit`` raised with argparse's message as its text."""
    from transformers import HfArgumentParser

    from hf_timm_layerdecay import LayerDecayTrainingArguments

    err = io.StringIO()
    base = ["--output_dir", str(workdir()), "--use_cpu", "--report_to", "none"]
    try:
        with contextlib.redirect_stderr(err):
            (args,) = HfArgumentParser(LayerDecayTrainingArguments).parse_args_into_dataclasses(base + list(argv))
    except SystemExit as exc:
        raise SystemExit(f"exit {exc.code}: {err.getvalue().strip().splitlines()[-1]}") from None
    return args


def lrs_by_layer(expected, wd=0.01, cls_name=None, **hyper):
    """Check ``{layer_id: lr}`` of the optimizer's groups, their weight decays and other values."""

    def check(opt):
        if cls_name is not None:
            assert type(opt).__name__ == cls_name, type(opt)
        groups = opt.param_groups
        got = {}
        for g in groups:
            got.setdefault(g["layer_id"], g["lr"])
            assert g["lr"] == pytest.approx(got[g["layer_id"]], rel=1e-12)
        assert got.keys() == expected.keys(), got
        assert [got[k] for k in expected] == pytest.approx(list(expected.values()), rel=1e-12), got
        assert {g["weight_decay"] for g in groups} == ({0.0, wd} if wd else {0.0})
        for key, value in hyper.items():
            assert all(g[key] == value for g in groups), key

    return check


def wrapped_own_model(t):
    return t.create_optimizer(nn.DataParallel(t.model))


CASES = [
    # --- LayerDecayTrainingArguments in Python
    Case("args-decay-zero", "`LayerDecayTrainingArguments(layer_decay=0)`", lambda: LA(layer_decay=0), error(LayerDecayError, "layer_decay must be > 0", "got 0")),
    Case("args-decay-above-one", "`LayerDecayTrainingArguments(layer_decay=1.5)`", lambda: LA(layer_decay=1.5), error(LayerDecayError, "layer_decay=1.5 is above 1", "allow_decay_above_one=True")),
    Case("args-decay-negative", "`LayerDecayTrainingArguments(layer_decay=-0.5)`", lambda: LA(layer_decay=-0.5), error(LayerDecayError, "layer_decay must be > 0", "got -0.5")),
    Case("args-decay-nan", "`LayerDecayTrainingArguments(layer_decay=float('nan'))`", lambda: LA(layer_decay=float("nan")),
         error(LayerDecayError, "layer_decay must be > 0", "got nan")),
    Case("args-granularity", '`LayerDecayTrainingArguments(layer_decay_granularity="blocks")`',
         lambda: LA(layer_decay_granularity="blocks"), error(ValueError, "AutoStrategy.granularity must be one of ('block', 'stage')")),
    Case("args-decay-one", "`LayerDecayTrainingArguments(layer_decay=1.0)`", lambda: LA(layer_decay=1.0).layer_decay, result("accepted: 1.0", equals(1.0))),
    # --- through HfArgumentParser
    Case("parse-strategy", "`--layer_decay_strategy bogus`", lambda: parse("--layer_decay_strategy", "bogus"),
         error(SystemExit, "exit 2", "invalid choice: 'bogus' (choose from 'auto', 'structural')")),
    Case("parse-granularity", "`--layer_decay_granularity blocks`", lambda: parse("--layer_decay_granularity", "blocks"),
         error(SystemExit, "exit 2", "invalid choice: 'blocks' (choose from 'block', 'stage')")),
    Case("parse-decay-word", "`--layer_decay abc`", lambda: parse("--layer_decay", "abc"),
         error(SystemExit, "exit 2", "argument --layer_decay/--layer-decay: layer_decay='abc' is neither a number nor region=decay pairs")),
    Case("parse-min-scale-word", "`--layer_decay_min_scale abc`", lambda: parse("--layer_decay_min_scale", "abc"),
         error(SystemExit, "exit 2", "invalid float value: 'abc'")),
    Case("parse-decay-zero", "`--layer_decay 0`", lambda: parse("--layer_decay", "0"), error(LayerDecayError, "layer_decay must be > 0", "got 0.0")),
    Case("parse-decay-above-one", "`--layer_decay 1.5`", lambda: parse("--layer_decay", "1.5"), error(LayerDecayError, "layer_decay=1.5 is above 1", "allow_decay_above_one=True")),
    Case("parse-misspelled", "`--layer_decy 0.8` (misspelled option)", lambda: parse("--layer_decy", "0.8"),
         error(ValueError, "Some specified arguments are not used by the HfArgumentParser: ['--layer_decy', '0.8']")),
    Case("parse-all", "`--layer_decay 0.8 --layer_decay_granularity stage --no_weight_decay_names a b --layer_decay_normalize_depth 2 --log_lr_per_layer`",
         lambda: (lambda a: (a.layer_decay, a.layer_decay_granularity, a.no_weight_decay_names, a.layer_decay_normalize_depth, a.log_lr_per_layer))(
             parse("--layer_decay", "0.8", "--layer_decay_granularity", "stage", "--no_weight_decay_names", "a", "b",
                   "--layer_decay_normalize_depth", "2", "--log_lr_per_layer")),
         result("parsed: 0.8, 'stage', ['a', 'b'], 2.0, True", equals((0.8, "stage", ["a", "b"], 2.0, True)))),
    # --- LayerDecayTrainer(layer_decay=...)
    Case("trainer-disagree", "`LayerDecayTrainer(args=LayerDecayTrainingArguments(layer_decay=0.8), layer_decay=0.5)`",
         lambda: trainer(LA(layer_decay=0.8), layer_decay=0.5), error(ValueError, "layer_decay=0.5 disagrees with args.layer_decay=0.8", "give one")),
    Case("trainer-agree", "the same value in both places (0.5)", lambda: optimizer(LA(layer_decay=0.5), layer_decay=0.5),
         result("lrs 1.25e-4 / 2.5e-4 / 5e-4 / 1e-3 for layers 0-3", lrs_by_layer(HALVING))),
    Case("trainer-from-args", "`layer_decay` only in `LayerDecayTrainingArguments` (0.5)", lambda: optimizer(LA(layer_decay=0.5)),
         result("lrs 1.25e-4 / 2.5e-4 / 5e-4 / 1e-3", lrs_by_layer(HALVING))),
    Case("trainer-kwarg", "`LayerDecayTrainer(..., layer_decay=0.5)` with plain `TrainingArguments(weight_decay=0.01)`",
         lambda: optimizer(layer_decay=0.5), result("lrs 1.25e-4 / 2.5e-4 / 5e-4 / 1e-3, weight decay 0.01 / 0", lrs_by_layer(HALVING))),
    Case("trainer-none", "no `layer_decay` anywhere", lambda: [len(g["params"]) for g in optimizer().param_groups],
         result("the plain Trainer's two groups (17 decayed, 24 not)", equals([17, 24]))),
    Case("trainer-decay-one", "`layer_decay=1.0`", lambda: optimizer(layer_decay=1.0),
         result("no layer split: `decay` / `no_decay` groups at lr 1e-3", lrs_by_layer({None: 1e-3}))),
    Case("trainer-decay-above-one", "`LayerDecayTrainer(..., layer_decay=1.5)`", lambda: optimizer(layer_decay=1.5),
         error(LayerDecayError, "layer_decay=1.5 is above 1")),
    Case("trainer-decay-zero", "`LayerDecayTrainer(..., layer_decay=0)`", lambda: optimizer(layer_decay=0),
         error(LayerDecayError, "layer_decay must be > 0")),
    Case("trainer-decay-str", '`LayerDecayTrainer(..., layer_decay="0.5")`', lambda: optimizer(layer_decay="0.5"),
         error(LayerDecayError, "layer_decay must be a float, a sequence of per-layer scales or a callable", "got '0.5'")),
    Case("trainer-lr-zero", "`TrainingArguments(learning_rate=0)`, `layer_decay=0.5`", lambda: optimizer(TA(learning_rate=0), layer_decay=0.5),
         error(ValueError, "lr must be a finite number > 0, got 0")),
    Case("trainer-wd-negative", "`TrainingArguments(weight_decay=-0.1)`, `layer_decay=0.5`",
         lambda: optimizer(TA(weight_decay=-0.1), layer_decay=0.5), error(ValueError, "weight_decay must be a finite number >= 0, got -0.1")),
    Case("trainer-frozen", "a frozen model, `layer_decay=0.5`", lambda: optimizer(model=tiny_bert().requires_grad_(False), layer_decay=0.5),
         error(ValueError, "the model has no trainable parameters")),
    Case("trainer-nwd-unknown", '`no_weight_decay_names=["nothing"]`', lambda: optimizer(LA(layer_decay=0.5, no_weight_decay_names=["nothing"])),
         warning(UserWarning, "no_weight_decay entries match no parameter: ['nothing']", check=lrs_by_layer(HALVING))),
    Case("trainer-normalize-depth", "`layer_decay_normalize_depth=2`, `layer_decay=0.5`",
         lambda: optimizer(LA(layer_decay=0.5, layer_decay_normalize_depth=2)),
         result("the stem gets 0.5^2: lrs 2.5e-4 / 3.97e-4 / 6.30e-4 / 1e-3",
                lrs_by_layer({0: 2.5e-4, 1: 1e-3 * 0.5 ** (4 / 3), 2: 1e-3 * 0.5 ** (2 / 3), 3: 1e-3}))),
    Case("trainer-normalize-depth-zero", "`layer_decay_normalize_depth=0`", lambda: optimizer(LA(layer_decay=0.5, layer_decay_normalize_depth=0)),
         error(LayerDecayError, "normalize_depth must be a number > 0, got 0")),
    Case("trainer-min-scale", "`layer_decay_min_scale=0.3`, `layer_decay=0.5`", lambda: optimizer(LA(layer_decay=0.5, layer_decay_min_scale=0.3)),
         result("layers 0 and 1 clamped to 0.3 and merged: lrs 3e-4 / 5e-4 / 1e-3", lrs_by_layer({0: 3e-4, 2: 5e-4, 3: 1e-3}))),
    Case("trainer-stage", '`layer_decay_granularity="stage"` on BERT (no stages)', lambda: optimizer(LA(layer_decay=0.5, layer_decay_granularity="stage")),
         result("same as block: lrs 1.25e-4 ... 1e-3", lrs_by_layer(HALVING))),
    Case("trainer-structural", '`layer_decay_strategy="structural"` on BERT', lambda: optimizer(LA(layer_decay=0.5, layer_decay_strategy="structural")),
         result("same ids from the module structure: lrs 1.25e-4 ... 1e-3", lrs_by_layer(HALVING))),
    Case("trainer-sgd", '`optim="sgd", optim_args="momentum=0.9"`', lambda: optimizer(TA(optim="sgd", optim_args="momentum=0.9"), layer_decay=0.5),
         result("SGD with momentum 0.9 in every group (transformers 5; 4.x ignores optim_args for sgd, as its plain Trainer does), lrs 1.25e-4 ... 1e-3",
                lrs_by_layer(HALVING, cls_name="SGD", momentum=SGD_MOMENTUM))),
    Case("trainer-adafactor", '`optim="adafactor"`', lambda: optimizer(TA(optim="adafactor"), layer_decay=0.5),
         result("Adafactor with the layer lrs", lrs_by_layer(HALVING, cls_name="Adafactor"))),
    Case("trainer-own-groups", '`optimizer_cls_and_kwargs=(SGD, {"params": ...})` (an optimizer that makes its own groups)',
         lambda: optimizer(layer_decay=0.5, optimizer_cls_and_kwargs=(torch.optim.SGD, {"lr": 0.1, "params": []})),
         error(ValueError, "builds its own parameter groups, so layer decay cannot be applied", "or set layer_decay=None")),
    Case("trainer-optimizer-cls", '`optimizer_cls_and_kwargs=(torch.optim.SGD, {"lr": 0.1, "momentum": 0.9})`',
         lambda: optimizer(layer_decay=0.5, optimizer_cls_and_kwargs=(torch.optim.SGD, {"lr": 0.1, "momentum": 0.9})),
         result("its lr is the head's: lrs 0.0125 / 0.025 / 0.05 / 0.1",
                lrs_by_layer({0: 0.0125, 1: 0.025, 2: 0.05, 3: 0.1}, cls_name="SGD", momentum=0.9))),
    Case("trainer-wrapped-model", "`trainer.create_optimizer(nn.DataParallel(trainer.model))`",
         lambda: wrapped_own_model(trainer(layer_decay=0.5)),
         result("the wrapper is seen through: lrs 1.25e-4 ... 1e-3", lrs_by_layer(HALVING))),
]


@pytest.mark.parametrize("case", CASES, ids=ids_of(CASES))
def test_bad_input(case, tmp_path):
    set_workdir(tmp_path)
    run_case(case)
