"""Bad inputs: ``create_optimizer`` (optimizer names and classes, optimizer keyword arguments,
resuming from a checkpoint with other groups)."""

import pytest
import torch

from bad_cases import Case, error, frozen, ids_of, mlp, result, run_case, set_workdir
from hf_timm_layerdecay import create_optimizer
from hf_timm_layerdecay.integrations.resume import ResumeMismatchError

AREA = "create_optimizer"


def C(opt="adamw", **kwargs):
    kwargs.setdefault("lr", 1)
    kwargs.setdefault("layer_decay", 0.5)
    return create_optimizer(mlp(), opt, **kwargs)


def optimizer_is(cls_name, lrs=(0.25, 0.25, 0.5, 0.5, 1.0, 1.0), **hyper):
    """Check the optimizer's class, its groups' lrs and weight decays, and other group values."""

    def check(optimizer):
        assert type(optimizer).__name__ == cls_name, type(optimizer)
        groups = optimizer.param_groups
        assert [g["lr"] for g in groups] == pytest.approx(list(lrs), rel=1e-12)
        if len(groups) == 6:
            assert [g["weight_decay"] for g in groups] == [0.05, 0.0] * 3
        for key, value in hyper.items():
            assert all(g[key] == value for g in groups), (key, [g[key] for g in groups])
        assert optimizer.defaults["lr"] == 1

    return check


class _NoWeightDecay(torch.optim.Optimizer):
    """An optimizer class without a ``weight_decay`` argument."""

    def __init__(self, params, lr=1e-3):
        super().__init__(params, dict(lr=lr))


def _resume(saved_decay, now_decay):
    saved = create_optimizer(mlp(), "adamw", lr=1, layer_decay=saved_decay)
    now = create_optimizer(mlp(), "adamw", lr=1, layer_decay=now_decay)
    now.load_state_dict(saved.state_dict())
    return now


def _resume_from_plain():
    model = mlp()
    now = create_optimizer(model, "adamw", lr=1, layer_decay=0.5)
    now.load_state_dict(torch.optim.AdamW(model.parameters(), lr=1).state_dict())


_UNKNOWN = "unknown optimizer"

CASES = [
    # --- the optimizer
    Case("opt-typo", '`create_optimizer(model, "adamx", lr=1)`', lambda: C("adamx"),
         error(ValueError, _UNKNOWN + " 'adamx'", "Did you mean 'adamax', 'adam', 'radam'?", "or pass an optimizer class")),
    Case("opt-space", '`"adam w"`', lambda: C("adam w"), error(ValueError, _UNKNOWN + " 'adam w'", "Did you mean 'adamw'")),
    Case("opt-empty", '`""`', lambda: C(""), error(ValueError, _UNKNOWN + " ''", "Valid names: ")),
    Case("opt-lookahead-unknown", '`"lookahead_bogus"`', lambda: C("lookahead_bogus"),
         error(ValueError, _UNKNOWN + " 'lookahead_bogus'", "Valid names: ")),
    Case("opt-lbfgs", '`"lbfgs"`', lambda: C("lbfgs"),
         error(ValueError, "LBFGS supports a single parameter group", "cannot apply per-layer learning rates")),
    Case("opt-lbfgs-upper", '`"LBFGS"`', lambda: C("LBFGS"), error(ValueError, "LBFGS supports a single parameter group")),
    Case("opt-none", "`opt=None`", lambda: C(None), error(TypeError, "opt must be an optimizer name or class", "got None")),
    Case("opt-int", "`opt=5`", lambda: C(5), error(TypeError, "opt must be an optimizer name or class", "got 5")),
    Case("opt-upper", '`"ADAMW"`', lambda: C("ADAMW"), result("names are case-insensitive: `AdamW`, lrs 0.25 / 0.5 / 1.0", optimizer_is("AdamW"))),
    Case("opt-class", "`torch.optim.SGD` (a class)", lambda: C(torch.optim.SGD), result("`SGD`, lrs 0.25 / 0.5 / 1.0", optimizer_is("SGD"))),
    Case("opt-function", "a function `(params, **kwargs) -> SGD`", lambda: C(lambda params, **kw: torch.optim.SGD(params, **kw)),
         result("called with the groups: lrs 0.25 / 0.5 / 1.0", optimizer_is("SGD"))),
    Case("opt-timm-lion", '`"lion"` (timm\'s)', lambda: C("lion"), result("timm's `Lion` with our groups", optimizer_is("Lion"))),
    Case("opt-timm-lookahead", '`"lookahead_adamw"` (timm\'s)', lambda: C("lookahead_adamw"),
         result("timm's `Lookahead` around AdamW, groups kept", optimizer_is("Lookahead"))),
    Case("opt-no-weight-decay-arg", '`"sparseadam"` (no `weight_decay` argument) with `weight_decay=0.05`', lambda: C("sparseadam"),
         error(ValueError, "SparseAdam has no weight_decay argument", "pass weight_decay=0")),
    Case("opt-custom-no-weight-decay", "an optimizer class without `weight_decay`, `weight_decay=0.05`", lambda: C(_NoWeightDecay),
         error(ValueError, "_NoWeightDecay has no weight_decay argument", "pass weight_decay=0")),
    Case("opt-custom-no-weight-decay-0", "the same class with `weight_decay=0`", lambda: C(_NoWeightDecay, weight_decay=0),
         result("built: one group per layer (nothing to split), lrs 0.25 / 0.5 / 1.0",
                optimizer_is("_NoWeightDecay", lrs=(0.25, 0.5, 1.0)))),
    # --- optimizer keyword arguments
    Case("kw-wrong-optimizer", '`create_optimizer(model, "adamw", lr=1, momentum=0.9)`', lambda: C("adamw", momentum=0.9),
         error(TypeError, "AdamW does not accept ['momentum']", "it accepts ['amsgrad', 'betas'")),
    Case("kw-params", '`create_optimizer(model, "sgd", lr=1, momentum=0, params=[...])`', lambda: C("sgd", momentum=0, params=[]),
         error(TypeError, "SGD does not accept ['params']")),
    Case("kw-typo-group-option", "`layer_decy=0.5` (misspelled option)", lambda: C("sgd", momentum=0, layer_decy=0.5),
         error(TypeError, "SGD does not accept ['layer_decy']")),
    Case("kw-momentum", '`create_optimizer(model, "sgd", lr=1, momentum=0.9)`', lambda: C("sgd", momentum=0.9),
         result("every group has momentum 0.9, lrs 0.25 / 0.5 / 1.0", optimizer_is("SGD", momentum=0.9))),
    Case("kw-sgd-no-momentum", '`create_optimizer(model, "sgd", lr=1)` (no `momentum`)', lambda: C("sgd"),
         error(ValueError, "torch's SGD has momentum 0 by default, timm's \"sgd\" momentum 0.9 with Nesterov",
               "momentum=0.9, nesterov=True (timm's), or momentum=0 (torch's)")),
    Case("kw-lookahead-momentum", '`"lookahead_sgd"` with `momentum=0.9`', lambda: C("lookahead_sgd", momentum=0.9),
         result("timm's factory gets it: momentum 0.9 in every group", optimizer_is("Lookahead", momentum=0.9))),
    Case("kw-timm-unknown", '`"lion"` (timm\'s) with `bogus=1`', lambda: C("lion", bogus=1),
         error(TypeError, "Lion.__init__() got an unexpected keyword argument 'bogus'")),
    Case("kw-eps-negative", '`"adamw"` with `eps=-1`', lambda: C("adamw", eps=-1), error(ValueError, "Invalid epsilon value: -1")),
    Case("kw-min-scale", "`min_scale=0.3` (an `auto_layer_decay` option)", lambda: C("sgd", momentum=0, min_scale=0.3),
         result("goes to the groups: lrs 0.3 / 0.5 / 1.0", optimizer_is("SGD", lrs=(0.3, 0.3, 0.5, 0.5, 1.0, 1.0)))),
    Case("kw-strategy", '`strategy={r"0\\.": 0, r".*": "last"}`', lambda: C("sgd", momentum=0, strategy={r"0\.": 0, ".*": "last"}),
         result("goes to the groups: 2 layers, lrs 0.5 / 1.0", optimizer_is("SGD", lrs=(0.5, 0.5, 1.0, 1.0)))),
    # --- lr and the model
    Case("lr-missing", '`create_optimizer(model, "adamw")` without `lr`', lambda: create_optimizer(mlp(), "adamw"),
         error(TypeError, "missing 1 required keyword-only argument: 'lr'")),
    Case("lr-positional", '`create_optimizer(model, "adamw", 1e-3)` (lr positional)', lambda: create_optimizer(mlp(), "adamw", 1e-3),
         error(TypeError, "create_optimizer() takes from 1 to 2 positional arguments")),
    Case("lr-zero", "`lr=0`", lambda: C(lr=0), error(ValueError, "lr must be a finite number > 0")),
    Case("wd-negative", "`weight_decay=-1`", lambda: C(weight_decay=-1), error(ValueError, "weight_decay must be a finite number >= 0")),
    Case("model-frozen", "a model with every parameter frozen", lambda: create_optimizer(frozen(mlp(), 0, 2, 4), "adamw", lr=1),
         error(ValueError, "the model has no trainable parameters")),
    # --- resume
    Case("resume-other-decay", "`load_state_dict` of a checkpoint saved with `layer_decay=0.5` into one with 0.8",
         lambda: _resume(0.5, 0.8),
         error(ResumeMismatchError, "other parameter groups than this run", "scale 0.25 in the checkpoint, 0.64 now")),
    Case("resume-plain-optimizer", "`load_state_dict` of a plain one-group AdamW checkpoint",
         _resume_from_plain, error(ResumeMismatchError, "1 groups in the checkpoint, 6 now", "Was it saved with another layer_decay")),
    Case("resume-same", "`load_state_dict` of a checkpoint with the same settings", lambda: _resume(0.5, 0.5),
         result("restored: lrs 0.25 / 0.5 / 1.0", optimizer_is("AdamW"))),
]


@pytest.mark.parametrize("case", CASES, ids=ids_of(CASES))
def test_bad_input(case, tmp_path):
    set_workdir(tmp_path)
    run_case(case)
