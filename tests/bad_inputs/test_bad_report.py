"""Bad inputs: ``layer_decay_report`` / ``LayerDecayReport`` and ``check_param_groups`` given
groups that miss, repeat or add tensors."""

import json

import pytest
import torch
from torch import nn

from bad_cases import Case, equals, error, frozen, ids_of, mlp, quiet, result, run_case, set_workdir
from hf_timm_layerdecay import (
    LayerDecayReport, ParamGroupError, auto_layer_decay, check_param_groups, layer_decay_report,
)

AREA = "layer_decay_report and check_param_groups"

#: one model and its groups, shared by the cases below (nothing mutates them)
MODEL = mlp()
GROUPS = auto_layer_decay(MODEL, lr=1, layer_decay=0.5)


def _extra(*params):
    return GROUPS + [{"params": list(params)}]


def _tied():
    model = mlp()
    model[2].weight = model[0].weight
    return model


def _frozen_stem():
    return frozen(mlp(), 0)


def report_says(summary, names=None, lrs=None):
    """Check the report's summary line, and optionally its rows' names and lrs."""

    def check(report):
        assert isinstance(report, LayerDecayReport)
        assert str(report).splitlines()[-1 - len(report.notes)] == summary, str(report)
        if names is not None:
            assert [row.name for row in report.rows] == names
        if lrs is not None:
            assert [row.lr for row in report.rows] == pytest.approx(lrs, rel=1e-12)

    return check


_ALL_OK = "6 groups, 3 layers, 6 tensors, 50 elements; all 6 trainable parameters in exactly one group"
_NAMES = ["layer_0_decay", "layer_0_no_decay", "layer_1_decay", "layer_1_no_decay", "layer_2_decay", "layer_2_no_decay"]

CASES = [
    # --- layer_decay_report
    Case("report-ok", "`layer_decay_report(groups, model)`, groups from `auto_layer_decay(lr=1, layer_decay=0.5)`",
         lambda: layer_decay_report(GROUPS, MODEL),
         result("a row per group, lrs 0.25 / 0.5 / 1.0; summary: all 6 trainable parameters in exactly one group",
                report_says(_ALL_OK, _NAMES, [0.25, 0.25, 0.5, 0.5, 1.0, 1.0]))),
    Case("report-missing", "groups without the last one (`4.bias`), with the model", lambda: layer_decay_report(GROUPS[:-1], MODEL),
         result("no error; the summary says `PROBLEM: 1 trainable parameter(s) in no group: 4.bias`",
                report_says("5 groups, 3 layers, 5 tensors, 48 elements; PROBLEM: 1 trainable parameter(s) in no group: 4.bias"))),
    Case("report-duplicate", "an extra group holding `0.weight` again", lambda: layer_decay_report(_extra(MODEL[0].weight), MODEL),
         result("summary: `PROBLEM: 1 parameter(s) in two groups: 0.weight (in layer_0_decay and group 6)`",
                report_says("7 groups, 3 layers, 7 tensors, 66 elements; "
                            "PROBLEM: 1 parameter(s) in two groups: 0.weight (in layer_0_decay and group 6)"))),
    Case("report-foreign", "an extra group holding a tensor that is not the model's",
         lambda: layer_decay_report(_extra(torch.zeros(3)), MODEL),
         result("summary: `PROBLEM: 1 tensor(s) that are not parameters of the model: (3,) tensor in group 6`",
                report_says("7 groups, 3 layers, 7 tensors, 53 elements; "
                            "PROBLEM: 1 tensor(s) that are not parameters of the model: (3,) tensor in group 6"))),
    Case("report-empty-with-model", "`layer_decay_report([], model)`", lambda: layer_decay_report([], MODEL),
         result("summary: `PROBLEM: 6 trainable parameter(s) in no group: ...`",
                report_says("0 groups, 0 layers, 0 tensors, 0 elements; PROBLEM: 6 trainable parameter(s) in no group: "
                            "0.weight, 0.bias, 2.weight, 2.bias, 4.weight, 4.bias", []))),
    Case("report-empty", "`layer_decay_report([])`", lambda: layer_decay_report([]),
         result("an empty table: `0 groups, 0 layers, 0 tensors, 0 elements`", report_says("0 groups, 0 layers, 0 tensors, 0 elements", []))),
    Case("report-plain-optimizer", "`layer_decay_report(torch.optim.SGD(model.parameters(), lr=0.1).param_groups, model)`",
         lambda: layer_decay_report(torch.optim.SGD(MODEL.parameters(), lr=0.1).param_groups, MODEL),
         result("one row `group_0`, lr 0.1, names looked up in the model",
                lambda r: (report_says("1 groups, 0 layers, 6 tensors, 50 elements; all 6 trainable parameters in exactly one group",
                                       ["group_0"], [0.1])(r),
                           equals(["0.weight", "0.bias", "2.weight", "2.bias", "4.weight", "4.bias"])(r.rows[0].param_names)))),
    Case("report-plain-no-model", "plain `param_groups` without the model",
         lambda: layer_decay_report(torch.optim.SGD(MODEL.parameters(), lr=0.1).param_groups),
         result("names shown as `?`, no coverage line", lambda r: (equals(["?"] * 6)(r.rows[0].param_names), equals(None)(r.coverage)))),
    Case("report-lr-scale-with-lr", "groups built without `lr` (only `lr_scale`), `layer_decay_report(groups, model, lr=0.1)`",
         lambda: layer_decay_report(quiet(lambda: auto_layer_decay(MODEL, layer_decay=0.5)), MODEL, lr=0.1),
         result("effective lrs shown: 0.025 / 0.05 / 0.1", report_says(_ALL_OK, _NAMES, [0.025, 0.025, 0.05, 0.05, 0.1, 0.1]))),
    Case("report-lr-scale-without-lr", "the same groups without `lr=`",
         lambda: layer_decay_report(quiet(lambda: auto_layer_decay(MODEL, layer_decay=0.5)), MODEL),
         result("lr unknown: shown as `-`, scales 0.25 / 0.5 / 1.0",
                lambda r: (equals([None] * 6)([row.lr for row in r.rows]), equals([0.25, 0.25, 0.5, 0.5, 1.0, 1.0])([row.scale for row in r.rows]),
                           equals(["layer_0_decay", "0", "0.25", "-"])(r.table().splitlines()[2].split()[:4])))),
    Case("report-merged", "groups merged by `min_scale=1.0`", lambda: layer_decay_report(auto_layer_decay(MODEL, lr=1, layer_decay=0.5, min_scale=1.0), MODEL),
         result("two rows covering layers 0-2", lambda r: (equals([[0, 1, 2], [0, 1, 2]])([row.layers for row in r.rows]),
                                                           equals(["layers_0-2_decay", "0-2"])(r.table().splitlines()[2].split()[:2])))),
    Case("report-wrapped", "`layer_decay_report(groups, nn.DataParallel(model))`",
         lambda: layer_decay_report(auto_layer_decay(nn.DataParallel(MODEL), lr=1, layer_decay=0.5), nn.DataParallel(MODEL)),
         result("all covered, names `module.0.weight`...", report_says(_ALL_OK, _NAMES))),
    Case("report-json", "`json.dumps(report.to_dict())`", lambda: json.loads(json.dumps(layer_decay_report(GROUPS, MODEL).to_dict())),
         result("JSON-ready: coverage `ok: true`, 6 groups",
                lambda d: (equals({"trainable": 6, "missing": [], "duplicates": [], "foreign": [], "ok": True})(d["coverage"]),
                           equals(6)(len(d["groups"]))))),
    Case("report-direct", "`LayerDecayReport(rows=[], notes=(\"x\",))`", lambda: str(LayerDecayReport(rows=[], notes=("x",))),
         result("header, `0 groups, ...` and `note: x`", lambda text: equals(["0 groups, 0 layers, 0 tensors, 0 elements", "note: x"])(text.splitlines()[2:]))),
    # --- check_param_groups
    Case("check-ok", "`check_param_groups(groups, model)`, complete groups", lambda: check_param_groups(GROUPS, MODEL),
         result("returns `None`", equals(None))),
    Case("check-missing", "groups without the last one (`4.bias`)", lambda: check_param_groups(GROUPS[:-1], MODEL),
         error(ParamGroupError, "1 trainable parameter(s) in no group: 4.bias")),
    Case("check-duplicate", "`0.weight` in two groups", lambda: check_param_groups(_extra(MODEL[0].weight), MODEL),
         error(ParamGroupError, "1 parameter(s) in two groups: 0.weight (in layer_0_decay and group 6)")),
    Case("check-duplicate-within", "`0.weight` twice in one group",
         lambda: check_param_groups([{"params": list(MODEL.parameters()) + [MODEL[0].weight]}], MODEL),
         error(ParamGroupError, "1 parameter(s) in two groups: 0.weight (in group 0 and group 0)")),
    Case("check-foreign", "a tensor that is not the model's", lambda: check_param_groups(_extra(torch.zeros(3)), MODEL),
         error(ParamGroupError, "1 tensor(s) that are not parameters of the model: (3,) tensor in group 6")),
    Case("check-empty", "`check_param_groups([], model)`", lambda: check_param_groups([], MODEL),
         error(ParamGroupError, "6 trainable parameter(s) in no group: 0.weight, 0.bias")),
    Case("check-other-model", "groups of one model checked against another of the same shape", lambda: check_param_groups(GROUPS, mlp()),
         error(ParamGroupError, "6 trainable parameter(s) in no group", "6 tensor(s) that are not parameters of the model")),
    Case("check-plain-optimizer", "`check_param_groups(torch.optim.SGD(model.parameters(), lr=0.1).param_groups, model)`",
         lambda: check_param_groups(torch.optim.SGD(MODEL.parameters(), lr=0.1).param_groups, MODEL),
         result("returns `None`", equals(None))),
    Case("check-wrapped", "`check_param_groups(groups, nn.DataParallel(model))`",
         lambda: check_param_groups(GROUPS, nn.DataParallel(MODEL)), result("returns `None`: the wrapper holds the same tensors", equals(None))),
    Case("check-tied", "a model with one tensor under two names, `params=list(model.parameters())`",
         lambda: (lambda m: check_param_groups([{"params": list(m.parameters())}], m))(_tied()),
         result("returns `None`: the tied tensor counts once", equals(None))),
    Case("check-frozen-included", "a frozen parameter listed in a group as well",
         lambda: (lambda m: check_param_groups([{"params": list(m.parameters())}], m))(_frozen_stem()),
         result("returns `None`: extra frozen parameters are harmless (they get no gradient)", equals(None))),
]


@pytest.mark.parametrize("case", CASES, ids=ids_of(CASES))
def test_bad_input(case, tmp_path):
    set_workdir(tmp_path)
    run_case(case)
