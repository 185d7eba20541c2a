"""layer_decay_report(): the text table, the JSON data and the coverage check."""

import json

import pytest
import torch
from torch import nn

from hf_timm_layerdecay import auto_layer_decay, layer_decay_report


def model():
    return nn.Sequential(nn.Linear(4, 8), nn.Sequential(nn.LayerNorm(8), nn.Linear(8, 8)), nn.Sequential(nn.LayerNorm(8), nn.Linear(8, 8)), nn.Linear(8, 2))


def test_rows_have_the_numbers():
    net = model()
    report = layer_decay_report(auto_layer_decay(net, lr=0.1, layer_decay=0.5), net)
    rows = {row.name: row for row in report.rows}
    assert list(rows) == [f"layer_{i}_{k}" for i in range(4) for k in ("decay", "no_decay")]
    stem = rows["layer_0_decay"]
    assert (stem.layer_id, stem.tensors, stem.elements, stem.weight_decay) == (0, 1, 32, 0.05)
    assert stem.scale == 0.125 and stem.lr == pytest.approx(0.0125) and stem.param_names == ["0.weight"]
    block = rows["layer_1_no_decay"]
    assert block.param_names == ["1.0.weight", "1.0.bias", "1.1.bias"] and block.elements == 24
    assert report.coverage.ok and report.coverage.trainable == 12


def test_table_and_json():
    net = model()
    report = layer_decay_report(auto_layer_decay(net, lr=0.1, layer_decay=0.5), net, notes=["a remark"])
    text = str(report)
    lines = text.splitlines()
    assert lines[0].split() == ["group", "layer", "scale", "lr", "wd", "tensors", "elements", "parameters"]
    assert lines[2].split()[:7] == ["layer_0_decay", "0", "0.125", "0.0125", "0.05", "1", "32"]
    assert "8 groups, 4 layers, 12 tensors, 234 elements; all 12 trainable parameters in exactly one group" in text
    assert lines[-1] == "note: a remark"
    data = json.loads(json.dumps(report.to_dict()))
    assert data["groups"][0] == {
        "name": "layer_0_decay", "layer_id": 0, "layers": [0], "scale": 0.125, "lr": 0.0125, "weight_decay": 0.05,
        "tensors": 1, "elements": 32, "param_names": ["0.weight"],
    }
    assert data["coverage"]["ok"] is True and data["notes"] == ["a remark"]


def test_report_on_optimizer_groups_and_on_lr_scale_groups():
    net = model()
    optimizer = torch.optim.AdamW(auto_layer_decay(net, lr=0.1, layer_decay=0.5), lr=0.1)
    report = layer_decay_report(optimizer.param_groups, net)
    assert [row.lr for row in report.rows][::2] == pytest.approx([0.0125, 0.025, 0.05, 0.1])
    with pytest.warns(UserWarning):
        lr_scale_groups = auto_layer_decay(net, layer_decay=0.5)
    rows = layer_decay_report(lr_scale_groups, lr=0.1).rows
    assert [row.lr for row in rows][::2] == pytest.approx([0.0125, 0.025, 0.05, 0.1])
    assert layer_decay_report(lr_scale_groups).rows[0].lr is None


def test_report_flags_problems():
    net = model()
    groups = auto_layer_decay(net, lr=0.1, layer_decay=0.5)
    groups[0]["params"] = []
    report = layer_decay_report(groups, net)
    assert not report.coverage.ok and report.coverage.missing == ("0.weight",)
    assert "PROBLEM: 1 trainable parameter(s) in no group: 0.weight" in str(report)
    foreign = [{"params": [p for p in net.parameters()]}]
    names = layer_decay_report(foreign, net).rows[0].param_names
    assert names[:2] == ["0.weight", "0.bias"]  # names recovered from the model
