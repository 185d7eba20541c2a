"""Bad inputs: ``layer_decay``, ``min_scale``, ``normalize_depth`` and ``allow_decay_above_one``
(of ``auto_layer_decay``; ``create_optimizer`` and the Trainer pass them on)."""

import numpy as np
import pytest

from bad_cases import (
    Case, error, groups_are, ids_of, lrs_are, mlp, mlp_groups, result, run_case, set_workdir, two_groups, vit_meta,
)
from hf_timm_layerdecay import LayerDecayError, auto_layer_decay

AREA = "auto_layer_decay: layer_decay, min_scale, normalize_depth"


def A(**kwargs):
    return auto_layer_decay(mlp(), lr=1, **kwargs)


_POSITIVE = "layer_decay must be > 0"
_KIND = "layer_decay must be a float, a sequence of per-layer scales or a callable"
_SCALE = "every scale must be a finite number > 0"
_MIN = "min_scale must be a finite number >= 0"
_DEPTH = "normalize_depth must be a number > 0"


def _vit_stem_and_head(groups):
    by_name = {g["name"]: g for g in groups}
    assert len(groups) == 28, [g["name"] for g in groups]
    assert by_name["layer_0_decay"]["lr"] == pytest.approx(1e-3 * 0.65**13, rel=1e-12)
    assert by_name["layer_13_decay"]["lr"] == pytest.approx(1e-3, rel=1e-12)
    assert set(by_name["layer_0_no_decay"]["param_names"]) == {"cls_token", "pos_embed", "patch_embed.proj.bias"}


CASES = [
    # --- a float
    Case("decay-zero", "`layer_decay=0`", lambda: A(layer_decay=0), error(LayerDecayError, _POSITIVE, "1.0 turns decay off")),
    Case("decay-negative", "`layer_decay=-0.5`", lambda: A(layer_decay=-0.5), error(LayerDecayError, _POSITIVE, "got -0.5")),
    Case("decay-nan", "`layer_decay=float('nan')`", lambda: A(layer_decay=float("nan")), error(LayerDecayError, _POSITIVE, "got nan")),
    Case("decay-inf", "`layer_decay=float('inf')`", lambda: A(layer_decay=float("inf")), error(LayerDecayError, _POSITIVE, "got inf")),
    Case("decay-true", "`layer_decay=True`", lambda: A(layer_decay=True), error(LayerDecayError, _KIND, "got True")),
    Case("decay-false", "`layer_decay=False`", lambda: A(layer_decay=False), error(LayerDecayError, _KIND, "got False")),
    Case("decay-str", '`layer_decay="0.75"`', lambda: A(layer_decay="0.75"), error(LayerDecayError, _KIND, "got '0.75'")),
    Case("decay-bytes", "`layer_decay=b\"ab\"`", lambda: A(layer_decay=b"ab"), error(LayerDecayError, _KIND, "got b'ab'")),
    Case("decay-above-one", "`layer_decay=7.5` (a typo for 0.75)", lambda: A(layer_decay=7.5),
         error(LayerDecayError, "layer_decay=7.5 is above 1", "allow_decay_above_one=True")),
    Case("decay-above-one-allowed", "`layer_decay=1.5, allow_decay_above_one=True`",
         lambda: A(layer_decay=1.5, allow_decay_above_one=True),
         result("lower layers learn faster: lrs 2.25 / 1.5 / 1.0", mlp_groups(decay=1.5))),
    Case("decay-allow-below-one", "`layer_decay=0.5, allow_decay_above_one=True`",
         lambda: A(layer_decay=0.5, allow_decay_above_one=True), result("no effect below 1: lrs 0.25 / 0.5 / 1.0", mlp_groups())),
    Case("decay-one", "`layer_decay=1.0`", lambda: A(layer_decay=1.0),
         result("no layer decay: the two groups `decay` / `no_decay`, lr 1.0", two_groups())),
    Case("decay-one-int", "`layer_decay=1` (an int)", lambda: A(layer_decay=1),
         result("no layer decay: the two groups `decay` / `no_decay`", two_groups())),
    Case("decay-none", "`layer_decay=None`", lambda: A(layer_decay=None),
         result("no layer decay: the two groups `decay` / `no_decay`", two_groups())),
    Case("decay-numpy-float", "`layer_decay=np.float32(0.5)`", lambda: A(layer_decay=np.float32(0.5)),
         result("a number like any other: lrs 0.25 / 0.5 / 1.0", mlp_groups())),
    Case("decay-vit", "timm ViT-Tiny (meta device), `lr=1e-3, layer_decay=0.65`",
         lambda: auto_layer_decay(vit_meta(), lr=1e-3, layer_decay=0.65),
         result("28 groups; stem lr 1e-3 x 0.65^13, head 1e-3; `cls_token`, `pos_embed` not decayed", _vit_stem_and_head)),
    # --- a sequence
    Case("seq-short", "`layer_decay=[1.0, 0.5]` for 3 layers", lambda: A(layer_decay=[1.0, 0.5]),
         error(LayerDecayError, "layer_decay has 2 values but the model has 3 layer ids", "give exactly one scale per layer id")),
    Case("seq-short-vit", "12 values for ViT-Tiny's 14 ids", lambda: auto_layer_decay(vit_meta(), lr=1, layer_decay=[1.0] * 12),
         error(LayerDecayError, "has 12 values but the model has 14 layer ids", "(0..13)")),
    Case("seq-exact", "`layer_decay=[0.25, 0.5, 1.0]`", lambda: A(layer_decay=[0.25, 0.5, 1.0]),
         result("scale i = values[i]: lrs 0.25 / 0.5 / 1.0", mlp_groups())),
    Case("seq-numpy", "`layer_decay=np.array([0.25, 0.5, 1.0])`", lambda: A(layer_decay=np.array([0.25, 0.5, 1.0])),
         result("lrs 0.25 / 0.5 / 1.0", mlp_groups())),
    Case("seq-generator", "`layer_decay=(s for s in [0.25, 0.5, 1.0])`", lambda: A(layer_decay=(s for s in [0.25, 0.5, 1.0])),
         result("lrs 0.25 / 0.5 / 1.0", mlp_groups())),
    Case("seq-repeats", "`layer_decay=[0.5, 0.5, 1.0]`", lambda: A(layer_decay=[0.5, 0.5, 1.0]),
         result("layers 0 and 1 have equal scales and are merged: `layers_0-1_decay` (lr 0.5), ..., `layer_2_*` (1.0)",
                groups_are(("layers_0-1_decay", 0.5, 0.05, ["0.weight", "2.weight"]),
                           ("layers_0-1_no_decay", 0.5, 0.0, ["0.bias", "2.bias"]),
                           ("layer_2_decay", 1.0, 0.05, ["4.weight"]), ("layer_2_no_decay", 1.0, 0.0, ["4.bias"])))),
    Case("seq-zero", "`layer_decay=[0.5, 0, 1]`", lambda: A(layer_decay=[0.5, 0, 1]),
         error(LayerDecayError, "layer_decay[1] = 0", _SCALE, "requires_grad=False")),
    Case("seq-nan", "`layer_decay=[0.5, nan, 1]`", lambda: A(layer_decay=[0.5, float("nan"), 1]),
         error(LayerDecayError, "layer_decay[1] = nan", _SCALE)),
    Case("seq-negative", "`layer_decay=[-0.5, 0.5, 1]`", lambda: A(layer_decay=[-0.5, 0.5, 1]),
         error(LayerDecayError, "layer_decay[0] = -0.5", _SCALE)),
    Case("seq-bool", "`layer_decay=[0.5, True, 1]`", lambda: A(layer_decay=[0.5, True, 1]),
         error(LayerDecayError, "layer_decay[1] = True", _SCALE)),
    Case("seq-str-item", '`layer_decay=[0.25, "0.5", 1]`', lambda: A(layer_decay=[0.25, "0.5", 1]),
         error(LayerDecayError, "layer_decay[1] = '0.5'", _SCALE)),
    # --- a callable
    Case("fn-zero", "`layer_decay=lambda i: 0`", lambda: A(layer_decay=lambda i: 0),
         error(LayerDecayError, "layer_decay(0) = 0", _SCALE)),
    Case("fn-negative", "`layer_decay=lambda i: -1`", lambda: A(layer_decay=lambda i: -1),
         error(LayerDecayError, "layer_decay(0) = -1", _SCALE)),
    Case("fn-nan", "`layer_decay=lambda i: float('nan')`", lambda: A(layer_decay=lambda i: float("nan")),
         error(LayerDecayError, "layer_decay(0) = nan", _SCALE)),
    Case("fn-str", '`layer_decay=lambda i: "x"`', lambda: A(layer_decay=lambda i: "x"),
         error(LayerDecayError, "layer_decay(0) = 'x'", _SCALE)),
    Case("fn-none", "`layer_decay=lambda i: None` (forgot `return`)", lambda: A(layer_decay=lambda i: None),
         error(LayerDecayError, "layer_decay(0) = None", _SCALE)),
    Case("fn-ok", "`layer_decay=lambda i: 0.5 ** (2 - i)`", lambda: A(layer_decay=lambda i: 0.5 ** (2 - i)),
         result("lrs 0.25 / 0.5 / 1.0", mlp_groups())),
    # --- min_scale
    Case("min-negative", "`min_scale=-0.1`", lambda: A(layer_decay=0.5, min_scale=-0.1), error(LayerDecayError, _MIN, "got -0.1")),
    Case("min-nan", "`min_scale=float('nan')`", lambda: A(layer_decay=0.5, min_scale=float("nan")), error(LayerDecayError, _MIN, "got nan")),
    Case("min-inf", "`min_scale=float('inf')`", lambda: A(layer_decay=0.5, min_scale=float("inf")), error(LayerDecayError, _MIN, "got inf")),
    Case("min-str", '`min_scale="0.1"`', lambda: A(layer_decay=0.5, min_scale="0.1"), error(LayerDecayError, _MIN, "got '0.1'")),
    Case("min-bool", "`min_scale=True`", lambda: A(layer_decay=0.5, min_scale=True), error(LayerDecayError, _MIN, "got True")),
    Case("min-none", "`min_scale=None`", lambda: A(layer_decay=0.5, min_scale=None), error(LayerDecayError, _MIN, "got None")),
    Case("min-floor", "`layer_decay=0.5, min_scale=0.3`", lambda: A(layer_decay=0.5, min_scale=0.3),
         result("the stem's 0.25 is raised to 0.3: lrs 0.3 / 0.5 / 1.0", lrs_are(0.3, 0.3, 0.5, 0.5, 1.0, 1.0))),
    Case("min-one", "`layer_decay=0.5, min_scale=1.0`", lambda: A(layer_decay=0.5, min_scale=1.0),
         result("every scale clamped to 1: merged into `layers_0-2_decay` / `layers_0-2_no_decay`, lr 1.0",
                groups_are(("layers_0-2_decay", 1.0, 0.05, ["0.weight", "2.weight", "4.weight"]),
                           ("layers_0-2_no_decay", 1.0, 0.0, ["0.bias", "2.bias", "4.bias"])))),
    Case("min-with-sequence", "`layer_decay=[0.1, 0.5, 1.0], min_scale=0.2`", lambda: A(layer_decay=[0.1, 0.5, 1.0], min_scale=0.2),
         result("floors sequences too: lrs 0.2 / 0.5 / 1.0", lrs_are(0.2, 0.2, 0.5, 0.5, 1.0, 1.0))),
    # --- normalize_depth
    Case("depth-zero", "`normalize_depth=0`", lambda: A(layer_decay=0.5, normalize_depth=0), error(LayerDecayError, _DEPTH, "got 0")),
    Case("depth-negative", "`normalize_depth=-1`", lambda: A(layer_decay=0.5, normalize_depth=-1), error(LayerDecayError, _DEPTH, "got -1")),
    Case("depth-nan", "`normalize_depth=float('nan')`", lambda: A(layer_decay=0.5, normalize_depth=float("nan")),
         error(LayerDecayError, _DEPTH, "got nan")),
    Case("depth-inf", "`normalize_depth=float('inf')`", lambda: A(layer_decay=0.5, normalize_depth=float("inf")),
         error(LayerDecayError, _DEPTH, "got inf")),
    Case("depth-str", '`normalize_depth="2"`', lambda: A(layer_decay=0.5, normalize_depth="2"), error(LayerDecayError, _DEPTH, "got '2'")),
    Case("depth-bool", "`normalize_depth=True`", lambda: A(layer_decay=0.5, normalize_depth=True), error(LayerDecayError, _DEPTH, "got True")),
    Case("depth-with-sequence", "`normalize_depth=2` with `layer_decay=[0.25, 0.5, 1]`",
         lambda: A(layer_decay=[0.25, 0.5, 1], normalize_depth=2),
         error(LayerDecayError, "normalize_depth applies to a float layer_decay only")),
    Case("depth-with-callable", "`normalize_depth=2` with a callable `layer_decay`",
         lambda: A(layer_decay=lambda i: 1.0, normalize_depth=2),
         error(LayerDecayError, "normalize_depth applies to a float layer_decay only")),
    Case("depth-ok", "`layer_decay=0.5, normalize_depth=4` on 3 layers",
         lambda: A(layer_decay=0.5, normalize_depth=4),
         result("the stem gets 0.5^4 whatever the depth: lrs 0.0625 / 0.25 / 1.0",
                lrs_are(0.0625, 0.0625, 0.25, 0.25, 1.0, 1.0))),
]


@pytest.mark.parametrize("case", CASES, ids=ids_of(CASES))
def test_bad_input(case, tmp_path):
    set_workdir(tmp_path)
    run_case(case)
