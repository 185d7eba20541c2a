"""check_lr_ratios: the lrs of real schedulers after real steps, with and without lost decay."""

import warnings

import pytest
import torch
from torch import nn

from hf_timm_layerdecay import LayerDecayWarning, auto_layer_decay, check_lr_ratios


def model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 2))


def sgd(lr=1e-3, **kwargs):
    """SGD over three layers at decay 0.5: head 1e-3, 5e-4, 2.5e-4 (with lr), else lr_scale."""
    groups = auto_layer_decay(model(), layer_decay=0.5, weight_decay=0.0, **({"lr": lr} if lr else {}), **kwargs)
    return torch.optim.SGD(groups, lr=1e-3)


def steps(optimizer, scheduler, n, metric=None):
    """``n`` optimizer and scheduler steps; the problems found after each."""
    found = []
    for _ in range(n):
        optimizer.step()
        scheduler.step(*([metric] if metric is not None else []))
        found.append(check_lr_ratios(optimizer, warn=False))
    return found


def lrs(optimizer):
    return sorted({round(g["lr"], 12) for g in optimizer.param_groups})


@pytest.mark.parametrize(
    "make",
    [
        lambda opt: torch.optim.lr_scheduler.LambdaLR(opt, lambda step: 1 / (1 + step)),
        lambda opt: torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=10),  # eta_min=0
        lambda opt: torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=[g["lr"] for g in opt.param_groups], total_steps=12),
        lambda opt: __import__("transformers").get_cosine_with_min_lr_schedule_with_warmup(
            opt, num_warmup_steps=2, num_training_steps=10, min_lr=1e-5),  # relative to each group's lr
    ],
    ids=["lambda", "cosine", "one-cycle", "transformers-cosine-min-lr"],
)
def test_schedulers_that_keep_the_ratios_pass_at_every_step(make):
    optimizer = sgd()
    scheduler = make(optimizer)
    assert steps(optimizer, scheduler, 10) == [[]] * 10
    head, *_ = (g for g in optimizer.param_groups if g["layer_id"] == 2)
    low = next(g for g in optimizer.param_groups if g["layer_id"] == 0)
    assert low["lr"] == pytest.approx(head["lr"] * 0.25, rel=1e-9)


def test_an_absolute_eta_min_is_named_as_an_offset():
    optimizer = sgd()
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=10, eta_min=2e-4)
    found = steps(optimizer, scheduler, 3)
    # step 1: lr = 2e-4 + (lr_g - 2e-4) * (1 + cos(pi / 10)) / 2 -> 0.2446 of the way from the floor changes
    assert len(found[0]) == 1 and "plus one amount" in found[0][0] and "eta_min" in found[0][0]
    low, mid, head = lrs(optimizer)
    assert low / head > 0.25 + 1e-3  # flattened: the stem got more than its 0.25


def test_timm_lr_min_is_an_offset_on_lr_groups_but_not_on_lr_scale_groups():
    from timm.scheduler import CosineLRScheduler

    with_lr = sgd()
    scheduler = CosineLRScheduler(with_lr, t_initial=10, lr_min=1e-4)
    for epoch in range(1, 4):
        scheduler.step(epoch)
    problems = check_lr_ratios(with_lr, warn=False)
    assert len(problems) == 1 and "lr_min" in problems[0]

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the lr_scale-only warning of auto_layer_decay
        scaled = sgd(lr=None)
    scheduler = CosineLRScheduler(scaled, t_initial=10, lr_min=1e-4)
    for epoch in range(1, 4):
        scheduler.step(epoch)
        assert check_lr_ratios(scaled, warn=False) == []  # timm multiplies lr_scale in after the floor


def test_a_clamp_at_min_lr_is_named_as_a_floor():
    optimizer = sgd()
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, factor=0.5, patience=0, min_lr=1e-4)
    found = steps(optimizer, scheduler, 4, metric=1.0)  # no improvement: halve at every step
    # first step sets the best metric; then 5e-4, 2.5e-4, 1.25e-4 ... the stem reaches 1e-4 at the third
    first = next(i for i, f in enumerate(found) if f)
    assert lrs(optimizer)[0] == pytest.approx(1e-4)
    assert "held at lr 0.0001" in found[first][0] and "floor" in found[first][0]


def test_one_lr_written_into_every_group():
    optimizer = sgd()
    for group in optimizer.param_groups:
        group["lr"] = 3e-4  # a training loop's warmup: for g in optimizer.param_groups: g["lr"] = lr
    (problem,) = check_lr_ratios(optimizer, warn=False)
    assert problem.startswith("every parameter group has the same lr 0.0003: the decay is lost")
    assert "lr_scale" not in problem


def test_lr_scale_groups_under_a_torch_scheduler_name_the_fix():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        optimizer = sgd(lr=None)  # groups with lr_scale only: torch.optim gives every group lr=1e-3
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=0.5)
    (problems,) = steps(optimizer, scheduler, 1)
    assert len(problems) == 1 and "auto_layer_decay(..., lr=...)" in problems[0]


def test_a_group_changed_alone_is_named():
    optimizer = sgd()
    optimizer.param_groups[0]["lr"] = 9e-4
    (problem,) = check_lr_ratios(optimizer, warn=False)
    assert problem.startswith("1 parameter group(s) no longer have lr = head lr x scale (layer_0: lr 0.0009 instead of 0.00025)")


def test_warns_once_per_optimizer_and_cause():
    optimizer = sgd()
    for group in optimizer.param_groups:
        group["lr"] = 1e-3
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for _ in range(5):
            assert len(check_lr_ratios(optimizer)) == 1
        other = sgd()
        other.param_groups[0]["lr"] = 1.0
        check_lr_ratios(other)
    assert [issubclass(w.category, LayerDecayWarning) for w in caught] == [True, True]


def test_groups_without_scale_and_single_scales_are_not_checked():
    optimizer = sgd()
    optimizer.add_param_group({"params": [nn.Parameter(torch.zeros(1))], "param_names": ["extra"], "lr": 5.0})  # by hand
    assert check_lr_ratios(optimizer, warn=False) == []
    flat = torch.optim.SGD(auto_layer_decay(model(), lr=1e-3, layer_decay=None), lr=1e-3)
    for group in flat.param_groups:
        group["lr"] = 7.0
    assert check_lr_ratios(flat, warn=False) == []  # no decay: nothing to lose
