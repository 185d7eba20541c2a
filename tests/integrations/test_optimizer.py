"""create_optimizer(): torch and timm optimizers by name or class, with layer-decayed groups."""

import pytest
import timm.optim
import torch
from torch import nn

from hf_timm_layerdecay import create_optimizer


def model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 8), *[nn.Sequential(nn.LayerNorm(8), nn.Linear(8, 8)) for _ in range(2)], nn.Linear(8, 2))


def lrs(optimizer):
    return {g["layer_id"]: g["lr"] for g in optimizer.param_groups}


EXPECTED = {0: 0.01 * 0.5**3, 1: 0.01 * 0.5**2, 2: 0.01 * 0.5, 3: 0.01}


@pytest.mark.parametrize(
    "opt, cls",
    [
        ("adamw", torch.optim.AdamW),
        ("AdamW", torch.optim.AdamW),
        (torch.optim.SGD, torch.optim.SGD),  # "sgd" by name needs momentum= (bad input kw-sgd-no-momentum)
        ("rmsprop", torch.optim.RMSprop),
        ("nadam", torch.optim.NAdam),
        (torch.optim.Adam, torch.optim.Adam),
        ("lamb", timm.optim.Lamb),
        ("lion", timm.optim.Lion),
        ("adan", timm.optim.Adan),
        ("nadamw", timm.optim.NAdamW),
    ],
)
def test_names_and_classes(opt, cls):
    optimizer = create_optimizer(model(), opt, lr=0.01, layer_decay=0.5, weight_decay=0.02)
    assert type(optimizer) is cls
    assert lrs(optimizer) == pytest.approx(EXPECTED)
    assert optimizer.defaults["lr"] == 0.01  # the head's lr: what min-lr schedulers read
    assert {g["weight_decay"] for g in optimizer.param_groups} == {0.0, 0.02}
    loss = optimizer.param_groups[0]["params"][0].sum()
    loss.backward()
    optimizer.step()  # and it really steps


def test_timm_wrappers_and_defaults():
    optimizer = create_optimizer(model(), "lookahead_adamw", lr=0.01, layer_decay=0.5)
    assert type(optimizer).__name__ == "Lookahead"
    assert lrs(optimizer) == pytest.approx(EXPECTED)
    sgdp = create_optimizer(model(), "sgdp", lr=0.01, layer_decay=0.5)
    assert sgdp.defaults["nesterov"] is True and sgdp.defaults["momentum"] == 0.9  # timm's own defaults


def test_optimizer_kwargs_are_passed():
    optimizer = create_optimizer(model(), "sgd", lr=0.01, layer_decay=0.5, momentum=0.8, nesterov=True)
    assert optimizer.defaults["momentum"] == 0.8 and optimizer.defaults["nesterov"] is True
    optimizer = create_optimizer(model(), "adamw", lr=0.01, betas=(0.9, 0.95), foreach=True)
    assert optimizer.defaults["betas"] == (0.9, 0.95)


def test_unknown_names_list_the_valid_ones():
    with pytest.raises(ValueError, match=r"unknown optimizer 'admw'\. Did you mean 'adamw'.*Valid names: .*lamb.*sgd"):
        create_optimizer(model(), "admw", lr=0.01)
    with pytest.raises(ValueError, match="LBFGS supports a single parameter group"):
        create_optimizer(model(), "lbfgs", lr=0.01)
    with pytest.raises(TypeError, match=r"AdamW does not accept \['momentum'\]; it accepts \[.*'betas'"):
        create_optimizer(model(), "adamw", lr=0.01, momentum=0.9)
    with pytest.raises(ValueError, match="Rprop has no weight_decay argument; pass weight_decay=0"):
        create_optimizer(model(), "rprop", lr=0.01, weight_decay=0.05)
    rprop = create_optimizer(model(), "rprop", lr=0.01, weight_decay=0.0, layer_decay=0.5)
    assert lrs(rprop) == pytest.approx(EXPECTED)
    with pytest.raises(TypeError, match="optimizer name or class"):
        create_optimizer(model(), 3, lr=0.01)


def test_layer_decay_off_and_grouping_options():
    optimizer = create_optimizer(model(), "adamw", lr=0.01, layer_decay=None)
    assert [g["name"] for g in optimizer.param_groups] == ["decay", "no_decay"]
    optimizer = create_optimizer(model(), "adamw", lr=0.01, layer_decay=0.5, strategy={r"0\.": 0, r".*": 1})
    assert lrs(optimizer) == pytest.approx({0: 0.005, 1: 0.01})


def test_grouping_options_and_optimizer_options_are_split_by_name():
    optimizer = create_optimizer(
        model(), "adamw", lr=0.01, layer_decay=0.5, min_scale=0.4, no_weight_decay=["0.weight"], amsgrad=True
    )
    assert lrs(optimizer)[0] == 0.004 and optimizer.defaults["amsgrad"] is True
    assert {n: g["weight_decay"] for g in optimizer.param_groups for n in g["param_names"]}["0.weight"] == 0.0


def test_resuming_with_other_groups_is_refused_even_through_a_wrapper():
    from hf_timm_layerdecay.integrations.resume import ResumeMismatchError

    saved = create_optimizer(model(), "lookahead_adamw", lr=0.01, layer_decay=0.5).state_dict()
    same = create_optimizer(model(), "lookahead_adamw", lr=0.01, layer_decay=0.5)
    same.load_state_dict(saved)
    other = create_optimizer(model(), "lookahead_adamw", lr=0.01, layer_decay=0.7)
    with pytest.raises(ResumeMismatchError, match=r"group 0 \(layer_0_decay\): scale 0.125 in the checkpoint, 0.343 now"):
        other.load_state_dict(saved)
    regrouped = create_optimizer(model(), "adamw", lr=0.01, layer_decay=None)
    with pytest.raises(ResumeMismatchError, match="8 groups in the checkpoint, 2 now"):
        regrouped.load_state_dict(saved)


def test_guarding_an_optimizer_twice_checks_once():
    # the Trainer guards DeepSpeed's optimizer again when it asks for the scheduler
    from hf_timm_layerdecay.integrations.resume import guard_resume

    optimizer = create_optimizer(model(), "adamw", lr=0.01, layer_decay=0.5)
    hooks = len(optimizer._optimizer_load_state_dict_pre_hooks)
    assert guard_resume(guard_resume(optimizer)) is optimizer
    assert len(optimizer._optimizer_load_state_dict_pre_hooks) == hooks == 1
