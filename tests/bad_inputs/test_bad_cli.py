"""Bad inputs: the command line, ``python -m hf_timm_layerdecay inspect|compare MODEL ...``
(run in-process through ``hf_timm_layerdecay.cli.main``). Usage errors exit with argparse's code
2; errors about the model or the values are printed as ``error: ...`` and return 2."""

import json

import pytest

from bad_cases import Case, cli, exits, ids_of, run_case, set_workdir, workdir

AREA = "Command line"

VIT = "vit_tiny_patch16_224"


def _in(folder: str = "") -> str:
    path = workdir() / folder
    path.mkdir(parents=True, exist_ok=True)
    return str(path)


def json_groups(check_groups):
    def check(out):
        data = json.loads(out)
        assert data["coverage"]["ok"], data["coverage"]
        check_groups(data["groups"])

    return check


def _vit_lrs(decay, lr=1e-3, depth=13, top=13):
    def check(groups):
        by_name = {g["name"]: g for g in groups}
        assert by_name["layer_0_decay"]["lr"] == pytest.approx(lr * decay**depth, rel=1e-9)
        assert by_name[f"layer_{top}_decay"]["lr"] == pytest.approx(lr, rel=1e-9)

    return check


def _merged_per_layer(groups):
    assert [g["name"] for g in groups] == [f"layer_{i}" for i in range(14)]
    assert {g["weight_decay"] for g in groups} == {0.0}


def _table_rows(names):
    def check(out):
        rows = [line.split()[0] for line in out.splitlines()[3:] if line and not line[0].isdigit()]
        assert rows == names, rows

    return check


_USAGE = "usage: hf_timm_layerdecay"

CASES = [
    # --- usage errors (argparse)
    Case("cli-no-command", "`hf_timm_layerdecay` (no command)", lambda: cli(), exits(2, "the following arguments are required: command")),
    Case("cli-unknown-command", "`hf_timm_layerdecay show vit`", lambda: cli("show", "vit"),
         exits(2, "invalid choice: 'show' (choose from 'inspect', 'compare')")),
    Case("cli-no-model", "`inspect` without a model", lambda: cli("inspect"), exits(2, "the following arguments are required: model")),
    Case("cli-compare-no-model", "`compare` without a model", lambda: cli("compare"), exits(2, "the following arguments are required: model")),
    Case("cli-unknown-option", f"`inspect {VIT} --bogus`", lambda: cli("inspect", VIT, "--bogus"), exits(2, "unrecognized arguments: --bogus")),
    Case("cli-decay-word", f"`inspect {VIT} --layer-decay abc`", lambda: cli("inspect", VIT, "--layer-decay", "abc"),
         exits(2, "argument --layer-decay: layer_decay='abc' is neither a number nor region=decay pairs")),
    Case("cli-names-word", f"`inspect {VIT} --names x`", lambda: cli("inspect", VIT, "--names", "x"),
         exits(2, "argument --names: invalid int value: 'x'")),
    Case("cli-strategy", f"`inspect {VIT} --strategy bogus`", lambda: cli("inspect", VIT, "--strategy", "bogus"),
         exits(2, "argument --strategy: invalid choice: 'bogus' (choose from 'auto', 'structural')")),
    Case("cli-granularity", f"`inspect {VIT} --granularity blocks`", lambda: cli("inspect", VIT, "--granularity", "blocks"),
         exits(2, "argument --granularity: invalid choice: 'blocks' (choose from 'block', 'stage')")),
    Case("cli-task", f"`inspect {VIT} --task foo`", lambda: cli("inspect", VIT, "--task", "foo"),
         exits(2, "argument --task: invalid choice: 'foo'", "'causal-lm'")),
    # --- values
    Case("cli-decay-zero", f"`inspect {VIT} --layer-decay 0`", lambda: cli("inspect", VIT, "--layer-decay", "0"),
         exits(2, "error: layer_decay must be > 0, got 0.0", "1.0 turns decay off")),
    Case("cli-decay-nan", f"`inspect {VIT} --layer-decay nan`", lambda: cli("inspect", VIT, "--layer-decay", "nan"),
         exits(2, "error: layer_decay must be > 0, got nan")),
    Case("cli-decay-above-one", f"`inspect {VIT} --layer-decay 1.5`", lambda: cli("inspect", VIT, "--layer-decay", "1.5"),
         exits(2, "error: layer_decay=1.5 is above 1")),
    Case("cli-lr-zero", f"`inspect {VIT} --lr 0`", lambda: cli("inspect", VIT, "--lr", "0"), exits(2, "error: lr must be a finite number > 0, got 0.0")),
    Case("cli-lr-negative", f"`inspect {VIT} --lr -1`", lambda: cli("inspect", VIT, "--lr", "-1"), exits(2, "error: lr must be a finite number > 0, got -1.0")),
    Case("cli-lr-inf", f"`inspect {VIT} --lr inf`", lambda: cli("inspect", VIT, "--lr", "inf"), exits(2, "error: lr must be a finite number > 0, got inf")),
    Case("cli-wd-negative", f"`inspect {VIT} --weight-decay -0.1`", lambda: cli("inspect", VIT, "--weight-decay", "-0.1"),
         exits(2, "error: weight_decay must be a finite number >= 0, got -0.1")),
    Case("cli-depth-zero", f"`inspect {VIT} --normalize-depth 0`", lambda: cli("inspect", VIT, "--normalize-depth", "0"),
         exits(2, "error: normalize_depth must be a number > 0, got 0.0")),
    Case("cli-compare-decay-zero", f"`compare {VIT} --layer-decay 0`", lambda: cli("compare", VIT, "--layer-decay", "0"),
         exits(2, "error: layer_decay must be > 0")),
    Case("cli-compare-decay-above-one", f"`compare {VIT} --layer-decay 1.5`", lambda: cli("compare", VIT, "--layer-decay", "1.5"),
         exits(2, "error: layer_decay=1.5 is above 1")),
    # --- the model
    Case("cli-model-typo", "`inspect vit_tiny_patch16` (cut short)", lambda: cli("inspect", "vit_tiny_patch16"),
         exits(2, "error: unknown model 'vit_tiny_patch16'", "Close matches:", "vit_tiny_patch16_224")),
    Case("cli-model-unknown", "`inspect zzzzqqqxx`", lambda: cli("inspect", "zzzzqqqxx"),
         exits(2, "error: unknown model 'zzzzqqqxx'", "a path to a config.json")),
    Case("cli-model-missing-json", "`inspect missing.json` (no such file)", lambda: cli("inspect", _in() + "/missing.json"),
         exits(2, "error: no config file at", "missing.json")),
    Case("cli-model-folder-without-config", "`inspect some_folder/` without a `config.json` in it", lambda: cli("inspect", _in("empty")),
         exits(2, "error: no config file at", "empty/config.json")),
    Case("cli-task-on-timm", f"`inspect {VIT} --task causal-lm`", lambda: cli("inspect", VIT, "--task", "causal-lm"),
         exits(2, f"error: {VIT} is a timm image model; --task does not apply")),
    Case("cli-task-missing-head", "`inspect vit --task sequence-classification` (no such head)",
         lambda: cli("inspect", "vit", "--task", "sequence-classification"), exits(2, "error: vit has no sequence-classification model")),
    Case("cli-compare-transformers", "`compare bert`", lambda: cli("compare", "bert"), exits(2, "error: compare needs a timm model; bert is BertModel")),
    # --- unusual but valid
    Case("cli-decay-one", f"`inspect {VIT} --layer-decay 1.0`", lambda: cli("inspect", VIT, "--layer-decay", "1.0"),
         exits(0, "decay", stream="out", says="two groups, `decay` and `no_decay`", check=_table_rows(["decay", "no_decay"]))),
    Case("cli-weight-decay-zero", f"`inspect {VIT} --weight-decay 0 --json`", lambda: cli("inspect", VIT, "--weight-decay", "0", "--json"),
         exits(0, says="one merged group per layer, `layer_0` ... `layer_13`, weight decay 0", check=json_groups(_merged_per_layer))),
    Case("cli-normalize-depth", f"`inspect {VIT} --layer-decay 0.5 --normalize-depth 2 --json`",
         lambda: cli("inspect", VIT, "--layer-decay", "0.5", "--normalize-depth", "2", "--json"),
         exits(0, says="the stem's lr is 1e-3 x 0.5^2", check=json_groups(_vit_lrs(0.5, depth=2)))),
    Case("cli-plot-format", f"`inspect {VIT} --plot out.xyz` (a format matplotlib lacks)", lambda: cli("inspect", VIT, "--plot", _in() + "/out.xyz"),
         exits(2, "error: Format 'xyz' is not supported", says="the table is printed first"), needs="matplotlib"),
]


@pytest.mark.parametrize("case", CASES, ids=ids_of(CASES))
def test_bad_input(case, tmp_path):
    set_workdir(tmp_path)
    run_case(case)
