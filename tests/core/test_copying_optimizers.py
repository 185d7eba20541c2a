"""Optimizers that hold copies of the parameters in their groups (DeepSpeed ZeRO: a flat partition
per group, or nothing under ZeRO-3) are checked and reported by the names their groups carry; any
other optimizer holding foreign tensors is still an error. The real ZeRO run is in
``tests/integrations/test_deepspeed.py``."""

import pytest
import torch

from hf_timm_layerdecay import ParamGroupError, auto_layer_decay, check_param_groups, layer_decay_report


class ZeroLike:
    """What DeepSpeed's ZeRO optimizers look like from outside: the group dicts the user gave, with
    ``params`` replaced (by one flat copy, or emptied), and the originals in ``bit16_groups``."""

    def __init__(self, groups: list[dict], partitioned: bool) -> None:
        self.bit16_groups = [list(g["params"]) for g in groups]
        flat = lambda g: [] if partitioned else [torch.cat([p.detach().flatten() for p in g["params"]])]  # noqa: E731
        self.param_groups = [{**g, "params": flat(g)} for g in groups]


def model() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.ReLU(), torch.nn.Linear(4, 2))


@pytest.mark.parametrize("partitioned", [False, True], ids=["zero-1-2", "zero-3"])
def test_groups_holding_copies_are_checked_by_their_names(partitioned):
    net = model()
    optimizer = ZeroLike(auto_layer_decay(net, lr=1.0, layer_decay=0.5), partitioned)
    check_param_groups(optimizer, net)
    report = layer_decay_report(optimizer, net)
    assert report.coverage.ok
    assert [(row.name, row.tensors, row.elements) for row in report.rows] == [
        ("layer_0_decay", 1, 12), ("layer_0_no_decay", 1, 4), ("layer_1_decay", 1, 8), ("layer_1_no_decay", 1, 2)]
    optimizer.param_groups[1]["param_names"] = []  # a group that lost its names covers nothing
    with pytest.raises(ParamGroupError, match=r"1 trainable parameter\(s\) in no group: 0.bias"):
        check_param_groups(optimizer, net)
    optimizer.param_groups[1]["param_names"] = ["0.bias", "head.bias"]
    with pytest.raises(ParamGroupError, match=r"1 tensor\(s\) that are not parameters of the model: 'head.bias' named in"):
        check_param_groups(optimizer, net)


def test_an_ordinary_optimizer_holding_foreign_tensors_is_still_an_error():
    net = model()
    groups = auto_layer_decay(net, lr=1.0, layer_decay=0.5)
    copies = [{**g, "params": [p.detach().clone() for p in g["params"]]} for g in groups]
    with pytest.raises(ParamGroupError, match="not parameters of the model"):
        check_param_groups(torch.optim.SGD(copies, lr=1.0), net)  # same names, other tensors: not ZeRO's bookkeeping
