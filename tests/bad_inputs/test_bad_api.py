"""Bad inputs: ``auto_layer_decay``'s model, ``lr``, ``weight_decay`` and no-weight-decay options."""

import pytest
import torch
from torch import nn

from bad_cases import (
    Case, error, frozen, groups_are, ids_of, mlp, mlp_groups, quiet, result, rows, run_case, set_workdir,
    two_groups, warning,
)
from hf_timm_layerdecay import auto_layer_decay

AREA = "auto_layer_decay: the model, lr, weight decay"


def A(model=None, **kwargs):
    return auto_layer_decay(mlp() if model is None else model, **kwargs)


def _shared_module() -> nn.Sequential:
    shared = nn.Linear(4, 4)
    return nn.Sequential(nn.Linear(4, 4), shared, shared, nn.Linear(4, 2))


def _tied() -> nn.Sequential:
    model = mlp()
    model[2].weight = model[0].weight  # one tensor, two names
    return model


class _Listed(nn.Module):
    """A model with a ``no_weight_decay()`` method (timm's convention)."""

    def __init__(self, listed) -> None:
        super().__init__()
        self.listed = listed
        self.pos = nn.Parameter(torch.zeros(2, 4))
        self.fc = nn.Linear(4, 2)

    def no_weight_decay(self):
        return self.listed


def _assert_lr_scale_only(group: dict) -> None:
    assert "lr" not in group and "lr_scale" in group, group


def _dp_no_decay_has(name: str):
    def check(groups):
        by_name = {r[0]: r for r in rows(groups)}
        assert name in by_name["no_decay"][3] and name not in by_name["decay"][3], rows(groups)

    return check


_MODEL = "model must be a torch.nn.Module"
_LR = "lr must be a finite number > 0"
_WD = "weight_decay must be a finite number >= 0"
_NO_TRAINABLE = "the model has no trainable parameters"
_UNUSED = "no_weight_decay entries match no parameter"

CASES = [
    # --- the model
    Case("model-str", '`auto_layer_decay("vit_base_patch16_224", lr=1e-3)`',
         lambda: auto_layer_decay("vit_base_patch16_224", lr=1e-3), error(TypeError, _MODEL, "got str")),
    Case("model-none", "`auto_layer_decay(None, lr=1e-3)`",
         lambda: auto_layer_decay(None, lr=1e-3), error(TypeError, _MODEL, "got NoneType")),
    Case("model-tensor", "`auto_layer_decay(torch.zeros(2), lr=1e-3)`",
         lambda: auto_layer_decay(torch.zeros(2), lr=1e-3), error(TypeError, _MODEL, "got Tensor")),
    Case("model-parameter", "`auto_layer_decay(nn.Parameter(...), lr=1e-3)`",
         lambda: auto_layer_decay(nn.Parameter(torch.zeros(2)), lr=1e-3), error(TypeError, _MODEL, "got Parameter")),
    Case("model-list", "a list of modules: `auto_layer_decay([nn.Linear(2, 2)], lr=1e-3)`",
         lambda: auto_layer_decay([nn.Linear(2, 2)], lr=1e-3), error(TypeError, _MODEL, "got list")),
    Case("model-class", "the class, not an instance: `auto_layer_decay(nn.Linear, lr=1e-3)`",
         lambda: auto_layer_decay(nn.Linear, lr=1e-3), error(TypeError, _MODEL, "got type")),
    Case("model-empty", "an empty `nn.Module()`",
         lambda: auto_layer_decay(nn.Module(), lr=1e-3), error(ValueError, _NO_TRAINABLE)),
    Case("model-buffers-only", "a model with buffers only: `nn.BatchNorm1d(3, affine=False)`",
         lambda: auto_layer_decay(nn.BatchNorm1d(3, affine=False), lr=1e-3), error(ValueError, _NO_TRAINABLE)),
    Case("model-all-frozen", "every parameter `requires_grad=False`",
         lambda: A(frozen(mlp(), 0, 2, 4), lr=1e-3), error(ValueError, _NO_TRAINABLE, "requires_grad=False")),
    Case("model-stem-frozen", "3-layer MLP, first layer frozen, `layer_decay=0.5, lr=1`",
         lambda: A(frozen(mlp(), 0), lr=1, layer_decay=0.5),
         result("frozen layer left out; the others keep their scales: lr 0.5 and 1.0 (the frame stays 3 layers)",
                groups_are(("layer_1_decay", 0.5, 0.05, ["2.weight"]), ("layer_1_no_decay", 0.5, 0.0, ["2.bias"]),
                           ("layer_2_decay", 1.0, 0.05, ["4.weight"]), ("layer_2_no_decay", 1.0, 0.0, ["4.bias"])))),
    Case("model-head-frozen", "3-layer MLP, last layer frozen, `layer_decay=0.5, lr=1`",
         lambda: A(frozen(mlp(), 4), lr=1, layer_decay=0.5),
         result("head left out; the others keep lr 0.25 and 0.5 (not shifted up)",
                groups_are(("layer_0_decay", 0.25, 0.05, ["0.weight"]), ("layer_0_no_decay", 0.25, 0.0, ["0.bias"]),
                           ("layer_1_decay", 0.5, 0.05, ["2.weight"]), ("layer_1_no_decay", 0.5, 0.0, ["2.bias"])))),
    Case("model-shared-module", "one `nn.Linear` used twice in a `Sequential`, `layer_decay=0.5`",
         lambda: A(_shared_module(), lr=1, layer_decay=0.5),
         result("the shared module counted once (id 1): 6 groups, lrs 0.25 / 0.5 / 1.0",
                groups_are(("layer_0_decay", 0.25, 0.05, ["0.weight"]), ("layer_0_no_decay", 0.25, 0.0, ["0.bias"]),
                           ("layer_1_decay", 0.5, 0.05, ["1.weight"]), ("layer_1_no_decay", 0.5, 0.0, ["1.bias"]),
                           ("layer_2_decay", 1.0, 0.05, ["3.weight"]), ("layer_2_no_decay", 1.0, 0.0, ["3.bias"])))),
    Case("model-tied-parameter", "one tensor under two names (`model[2].weight = model[0].weight`)",
         lambda: A(_tied(), lr=1, layer_decay=0.5),
         result("the tensor appears once, under its first name `0.weight` (layer 0, lr 0.25)",
                groups_are(("layer_0_decay", 0.25, 0.05, ["0.weight"]), ("layer_0_no_decay", 0.25, 0.0, ["0.bias"]),
                           ("layer_1_no_decay", 0.5, 0.0, ["2.bias"]),
                           ("layer_2_decay", 1.0, 0.05, ["4.weight"]), ("layer_2_no_decay", 1.0, 0.0, ["4.bias"])))),
    Case("model-dataparallel", "`nn.DataParallel(model)` on the CPU, `layer_decay=0.5`",
         lambda: A(nn.DataParallel(mlp()), lr=1, layer_decay=0.5),
         result("same lrs as the bare model, names as the wrapper reports them (`module.0.weight`)",
                mlp_groups(prefix="module."))),
    # --- lr
    Case("lr-zero", "`lr=0`", lambda: A(lr=0), error(ValueError, _LR, "got 0")),
    Case("lr-negative", "`lr=-1`", lambda: A(lr=-1), error(ValueError, _LR, "got -1")),
    Case("lr-nan", "`lr=float('nan')`", lambda: A(lr=float("nan")), error(ValueError, _LR, "got nan")),
    Case("lr-inf", "`lr=float('inf')`", lambda: A(lr=float("inf")), error(ValueError, _LR, "got inf")),
    Case("lr-bool", "`lr=True`", lambda: A(lr=True), error(ValueError, _LR, "got True")),
    Case("lr-str", "`lr=\"1e-3\"` (a string)", lambda: A(lr="1e-3"), error(ValueError, _LR, "got '1e-3'")),
    Case("lr-int", "`lr=1` (an int), `layer_decay=0.5`", lambda: A(lr=1, layer_decay=0.5),
         result("accepted: lrs 0.25, 0.5, 1.0", mlp_groups())),
    Case("lr-huge", "`lr=1e10`, `layer_decay=0.5`", lambda: A(lr=1e10, layer_decay=0.5),
         result("accepted as given: lrs 2.5e9, 5e9, 1e10", mlp_groups(lr=1e10))),
    Case("lr-omitted", "`lr` omitted, `layer_decay=0.5`", lambda: A(layer_decay=0.5),
         warning(UserWarning, "without lr", "Pass lr=...",
                 says="groups carry `lr_scale` 0.25 / 0.5 / 1.0 and no `lr`",
                 check=lambda groups: (mlp_groups()(groups), [_assert_lr_scale_only(g) for g in groups]))),
    Case("lr-omitted-no-decay", "`lr` omitted, `layer_decay=None`", lambda: A(layer_decay=None),
         result("no warning (nothing to lose): two groups with `lr_scale` 1.0",
                lambda groups: (two_groups()(groups), [_assert_lr_scale_only(g) for g in groups]))),
    # --- weight_decay
    Case("wd-negative", "`weight_decay=-0.1`", lambda: A(lr=1, weight_decay=-0.1), error(ValueError, _WD, "got -0.1")),
    Case("wd-nan", "`weight_decay=float('nan')`", lambda: A(lr=1, weight_decay=float("nan")), error(ValueError, _WD, "got nan")),
    Case("wd-inf", "`weight_decay=float('inf')`", lambda: A(lr=1, weight_decay=float("inf")), error(ValueError, _WD, "got inf")),
    Case("wd-bool", "`weight_decay=True`", lambda: A(lr=1, weight_decay=True), error(ValueError, _WD, "got True")),
    Case("wd-none", "`weight_decay=None`", lambda: A(lr=1, weight_decay=None), error(ValueError, _WD, "got None")),
    Case("wd-str", "`weight_decay=\"0.05\"`", lambda: A(lr=1, weight_decay="0.05"), error(ValueError, _WD, "got '0.05'")),
    Case("wd-zero", "`weight_decay=0`, `layer_decay=0.5`", lambda: A(lr=1, weight_decay=0, layer_decay=0.5),
         result("decay and no-decay groups of a layer are identical, so merged: 3 groups `layer_0..2`, lrs 0.25 / 0.5 / 1.0",
                groups_are(("layer_0", 0.25, 0, ["0.weight", "0.bias"]), ("layer_1", 0.5, 0, ["2.weight", "2.bias"]),
                           ("layer_2", 1.0, 0, ["4.weight", "4.bias"])))),
    # --- no_weight_decay
    Case("nwd-unknown-name", '`no_weight_decay=["nothing"]`', lambda: A(lr=1, layer_decay=None, no_weight_decay=["nothing"]),
         warning(UserWarning, _UNUSED, "['nothing']", says="the groups are built without it", check=two_groups())),
    Case("nwd-glob-no-match", '`no_weight_decay=["*.gamma"]` on a model without gammas',
         lambda: A(lr=1, layer_decay=None, no_weight_decay=["*.gamma"]),
         warning(UserWarning, _UNUSED, "['*.gamma']", check=two_groups())),
    Case("nwd-partial-name", '`no_weight_decay=["0.w"]` (a name cut short)',
         lambda: A(lr=1, layer_decay=None, no_weight_decay=["0.w"]),
         warning(UserWarning, _UNUSED, "['0.w']", says="entries match whole names or modules, never prefixes of a name",
                 check=two_groups())),
    Case("nwd-lone-string", '`no_weight_decay="0.weight"` (a string, not a list)',
         lambda: A(lr=1, layer_decay=None, no_weight_decay="0.weight"),
         result("taken as one name (not split into characters): `0.weight` not decayed",
                groups_are(("decay", 1.0, 0.05, ["2.weight", "4.weight"]),
                           ("no_decay", 1.0, 0.0, ["0.weight", "0.bias", "2.bias", "4.bias"])))),
    Case("nwd-module-name", '`no_weight_decay=["2"]` (a module name)',
         lambda: A(lr=1, layer_decay=None, no_weight_decay=["2"]),
         result("every parameter of module `2` not decayed",
                groups_are(("decay", 1.0, 0.05, ["0.weight", "4.weight"]),
                           ("no_decay", 1.0, 0.0, ["0.bias", "2.weight", "2.bias", "4.bias"])))),
    Case("nwd-glob-everything", '`no_weight_decay=["*.weight"]`, `layer_decay=0.5`',
         lambda: A(lr=1, layer_decay=0.5, no_weight_decay=["*.weight"]),
         result("no parameter decayed: only the three `layer_i_no_decay` groups, lrs 0.25 / 0.5 / 1.0",
                groups_are(("layer_0_no_decay", 0.25, 0.0, ["0.weight", "0.bias"]),
                           ("layer_1_no_decay", 0.5, 0.0, ["2.weight", "2.bias"]),
                           ("layer_2_no_decay", 1.0, 0.0, ["4.weight", "4.bias"])))),
    Case("nwd-duplicates", '`no_weight_decay=["0.weight", "0.weight"]`',
         lambda: A(lr=1, layer_decay=None, no_weight_decay=["0.weight", "0.weight"]),
         result("same as one entry, no warning",
                groups_are(("decay", 1.0, 0.05, ["2.weight", "4.weight"]),
                           ("no_decay", 1.0, 0.0, ["0.weight", "0.bias", "2.bias", "4.bias"])))),
    Case("nwd-wrapped-name", '`nn.DataParallel(model)` with `no_weight_decay=["module.0.weight"]`',
         lambda: A(nn.DataParallel(mlp()), lr=1, layer_decay=None, no_weight_decay=["module.0.weight"]),
         result("the wrapper's name matches", _dp_no_decay_has("module.0.weight"))),
    Case("nwd-bare-name-on-wrapper", '`nn.DataParallel(model)` with `no_weight_decay=["0.weight"]`',
         lambda: A(nn.DataParallel(mlp()), lr=1, layer_decay=None, no_weight_decay=["0.weight"]),
         result("the bare model's name matches too", _dp_no_decay_has("module.0.weight"))),
    Case("model-nwd-list", "a model whose `no_weight_decay()` returns `{\"pos\"}`",
         lambda: auto_layer_decay(_Listed({"pos"}), lr=1, layer_decay=None),
         result("`pos` (2-D) not decayed",
                groups_are(("decay", 1.0, 0.05, ["fc.weight"]), ("no_decay", 1.0, 0.0, ["pos", "fc.bias"])))),
    Case("model-nwd-string", "a model whose `no_weight_decay()` returns the string `\"pos\"`",
         lambda: auto_layer_decay(_Listed("pos"), lr=1, layer_decay=None),
         result("taken as one name: `pos` not decayed",
                groups_are(("decay", 1.0, 0.05, ["fc.weight"]), ("no_decay", 1.0, 0.0, ["pos", "fc.bias"])))),
    Case("model-nwd-off", "`model_no_weight_decay=False` on a model listing `pos`",
         lambda: auto_layer_decay(_Listed({"pos"}), lr=1, layer_decay=None, model_no_weight_decay=False),
         result("the model's list is ignored: `pos` decayed",
                groups_are(("decay", 1.0, 0.05, ["pos", "fc.weight"]), ("no_decay", 1.0, 0.0, ["fc.bias"])))),
    Case("model-nwd-none", "a model whose `no_weight_decay()` returns `None`",
         lambda: auto_layer_decay(_Listed(None), lr=1, layer_decay=None),
         result("treated as an empty list",
                groups_are(("decay", 1.0, 0.05, ["pos", "fc.weight"]), ("no_decay", 1.0, 0.0, ["fc.bias"])))),
]


@pytest.mark.parametrize("case", CASES, ids=ids_of(CASES))
def test_bad_input(case, tmp_path):
    set_workdir(tmp_path)
    run_case(case)
