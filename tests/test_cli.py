"""The command line: python -m hf_timm_layerdecay inspect MODEL (offline, no weights)."""

import json
import subprocess
import sys

import pytest

from hf_timm_layerdecay.cli import main


def test_inspect_prints_the_group_table(capsys):
    assert main(["inspect", "vit_tiny_patch16_224", "--layer-decay", "0.65", "--lr", "5e-4"]) == 0
    out = capsys.readouterr().out
    assert "vit_tiny_patch16_224 (VisionTransformer): layer_decay=0.65, lr=0.0005" in out
    rows = [line.split() for line in out.splitlines() if line.startswith("layer_")]
    assert len(rows) == 28
    assert rows[0][:4] == ["layer_0_decay", "0", f"{0.65**13:.4g}", f"{5e-4 * 0.65**13:.4g}"]
    assert rows[-1][:4] == ["layer_13_no_decay", "13", "1", "0.0005"]
    assert "all 152 trainable parameters in exactly one group" in out


def test_inspect_json(capsys):
    assert main(["inspect", "resnet18", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["model"] == "resnet18" and len(data["groups"]) == 20 and data["coverage"]["ok"]


def test_unknown_model_suggests_close_names(capsys):
    assert main(["inspect", "vit_tiny_patch16"]) == 2
    err = capsys.readouterr().err
    assert "unknown model 'vit_tiny_patch16'" in err and "vit_tiny_patch16_224" in err


def test_module_entry_point_runs():
    done = subprocess.run(
        [sys.executable, "-m", "hf_timm_layerdecay", "inspect", "convnext_atto", "--names", "1"],
        capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert "layer_13_no_decay" in done.stdout


def test_transformers_model_type_with_a_task(capsys):
    assert main(["inspect", "bert", "--task", "sequence-classification", "--names", "1"]) == 0
    out = capsys.readouterr().out
    assert "bert (BertForSequenceClassification)" in out
    assert "28 groups, 14 layers, 201 tensors" in out and "exactly one group" in out


def test_local_config_json(tmp_path, capsys):
    config = {"model_type": "gpt2", "architectures": ["GPT2LMHeadModel"], "n_layer": 3, "n_embd": 32, "n_head": 2, "vocab_size": 100}
    (tmp_path / "config.json").write_text(json.dumps(config))
    assert main(["inspect", str(tmp_path / "config.json"), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["class"] == "GPT2LMHeadModel" and {g["layer_id"] for g in data["groups"]} == set(range(5))
    assert main(["inspect", str(tmp_path / "missing.json")]) == 2


def test_plot_writes_a_png(tmp_path):
    pytest.importorskip("matplotlib")  # the notebooks extra; not installed by the oldest-versions check
    target = tmp_path / "layers.png"
    assert main(["inspect", "resnet18", "--plot", str(target)]) == 0
    assert target.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and target.stat().st_size > 10_000


def test_compare_with_timm(capsys):
    assert main(["compare", "vit_small_patch16_224"]) == 0
    out = capsys.readouterr().out
    assert "layer ids: ours 14, timm 14" in out and "another lr scale: 0 of 152" in out
    assert main(["compare", "bert"]) == 2
    assert "compare needs a timm model" in capsys.readouterr().err


def test_help_answers_without_importing_torch():
    # `python -m hf_timm_layerdecay --help` must not pay for torch, timm and transformers (seconds)
    code = (
        "import runpy, sys\n"
        "sys.argv = ['hf_timm_layerdecay', '--help']\n"
        "try:\n"
        "    runpy.run_module('hf_timm_layerdecay', run_name='__main__')\n"
        "except SystemExit as exit:\n"
        "    assert exit.code == 0, exit.code\n"
        "print(sorted(m for m in ('torch', 'timm', 'transformers') if m in sys.modules))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "usage: hf_timm_layerdecay" in done.stdout
    assert done.stdout.strip().splitlines()[-1] == "[]"
