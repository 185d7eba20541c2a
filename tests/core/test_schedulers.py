"""Schedulers never drop or double the decay.

For every scheduler, at every step, the lr of each group must equal ``schedule(step) x scale``,
where ``schedule`` is what the same scheduler does to a single group with the base lr. Where a
scheduler takes absolute floors and so cannot keep the ratios, the test pins down what happens
and checks the alternative the README recommends.
"""

import warnings

import pytest
import timm.scheduler
import torch
import transformers
from torch import nn

from hf_timm_layerdecay import auto_layer_decay

BASE_LR = 1e-3
STEPS = 30


def make_model():
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Linear(4, 8), *[nn.Sequential(nn.LayerNorm(8), nn.Linear(8, 8)) for _ in range(4)], nn.Linear(8, 2)
    )


def layer_decayed_optimizer(with_lr=True):
    model = make_model()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the lr-less groups warn; that is tested elsewhere
        groups = auto_layer_decay(model, lr=BASE_LR if with_lr else None, layer_decay=0.5)
    scales = [g["scale"] for g in groups]
    return torch.optim.AdamW(groups, lr=BASE_LR), scales


def single_group_optimizer():
    return torch.optim.AdamW([nn.Parameter(torch.zeros(1))], lr=BASE_LR)


def trace(optimizer, step_scheduler):
    """lr of every group at steps 0..STEPS-1 (the optimizer steps without gradients: a no-op)."""
    lrs = []
    for t in range(STEPS):
        lrs.append([g["lr"] for g in optimizer.param_groups])
        optimizer.step()
        step_scheduler(t)
    return lrs


def torch_scheduler(cls, **kwargs):
    def build(optimizer):
        scheduler = cls(optimizer, **kwargs)
        return lambda t: scheduler.step()
    return build


def hf_scheduler(name, **kwargs):
    def build(optimizer):
        scheduler = transformers.get_scheduler(
            name, optimizer, num_warmup_steps=5, num_training_steps=STEPS, scheduler_specific_kwargs=kwargs
        )
        return lambda t: scheduler.step()
    return build


def timm_cosine(**kwargs):
    def build(optimizer):
        scheduler = timm.scheduler.CosineLRScheduler(optimizer, t_initial=STEPS, t_in_epochs=False, **kwargs)
        return lambda t: scheduler.step_update(t + 1)
    return build


def timm_step(optimizer):
    scheduler = timm.scheduler.StepLRScheduler(optimizer, decay_t=5, decay_rate=0.5)
    return lambda t: scheduler.step(t + 1)


KEEP_RATIOS = {
    "no scheduler": lambda optimizer: (lambda t: None),
    "torch LambdaLR": torch_scheduler(torch.optim.lr_scheduler.LambdaLR, lr_lambda=lambda t: 0.9**t),
    "torch CosineAnnealingLR": torch_scheduler(torch.optim.lr_scheduler.CosineAnnealingLR, T_max=STEPS),
    "torch LinearLR+StepLR": lambda optimizer: torch_scheduler(
        torch.optim.lr_scheduler.SequentialLR,
        schedulers=[
            torch.optim.lr_scheduler.LinearLR(optimizer, start_factor=0.1, total_iters=5),
            torch.optim.lr_scheduler.StepLR(optimizer, step_size=7, gamma=0.3),
        ],
        milestones=[5],
    )(optimizer),
    "transformers linear": hf_scheduler("linear"),
    "transformers cosine": hf_scheduler("cosine"),
    "transformers cosine_with_min_lr (rate)": hf_scheduler("cosine_with_min_lr", min_lr_rate=0.1),
    "transformers cosine_with_min_lr (absolute)": hf_scheduler("cosine_with_min_lr", min_lr=2e-4),
    "transformers constant_with_warmup": hf_scheduler("constant_with_warmup"),
    "timm CosineLRScheduler": timm_cosine(warmup_t=5, warmup_lr_init=0.0, lr_min=0.0),
    "timm StepLRScheduler": timm_step,
}


@pytest.mark.parametrize("name", list(KEEP_RATIOS))
def test_every_group_follows_the_schedule_times_its_scale(name):
    build = KEEP_RATIOS[name]
    optimizer, scales = layer_decayed_optimizer()
    lrs = trace(optimizer, build(optimizer))
    reference = single_group_optimizer()
    schedule = [row[0] for row in trace(reference, build(reference))]
    assert len(set(scales)) == 6  # stem, 4 blocks, head
    for t in range(STEPS):
        assert lrs[t] == pytest.approx([schedule[t] * s for s in scales], rel=1e-9, abs=1e-15), f"step {t}"
    peak = max(range(STEPS), key=schedule.__getitem__)
    assert lrs[peak][0] / lrs[peak][-1] == pytest.approx(0.5**5)  # neither dropped (1.0) nor doubled (0.5**10)


def test_one_cycle_keeps_the_decay_when_given_the_group_lrs():
    optimizer, scales = layer_decayed_optimizer()
    build = torch_scheduler(
        torch.optim.lr_scheduler.OneCycleLR, max_lr=[g["lr"] for g in optimizer.param_groups], total_steps=STEPS + 1
    )
    lrs = trace(optimizer, build(optimizer))
    reference = single_group_optimizer()
    schedule = [row[0] for row in trace(reference, torch_scheduler(
        torch.optim.lr_scheduler.OneCycleLR, max_lr=BASE_LR, total_steps=STEPS + 1)(reference))]
    for t in range(STEPS):
        assert lrs[t] == pytest.approx([schedule[t] * s for s in scales], rel=1e-9)


def test_one_cycle_with_a_single_max_lr_drops_the_decay():
    """Pinned pitfall: a float max_lr overwrites every group's lr with the same schedule."""
    optimizer, _ = layer_decayed_optimizer()
    build = torch_scheduler(torch.optim.lr_scheduler.OneCycleLR, max_lr=BASE_LR, total_steps=STEPS + 1)
    lrs = trace(optimizer, build(optimizer))
    assert all(len(set(row)) == 1 for row in lrs[1:])


def test_absolute_floors_bend_the_ratios():
    """Pinned pitfall: eta_min / lr_min / warmup_lr_init are one absolute lr for all groups."""
    optimizer, scales = layer_decayed_optimizer()
    lrs = trace(optimizer, torch_scheduler(torch.optim.lr_scheduler.CosineAnnealingLR, T_max=STEPS, eta_min=1e-4)(optimizer))
    assert lrs[0][0] / lrs[0][-1] == pytest.approx(scales[0])
    late = lrs[STEPS - 1]
    assert late[0] / late[-1] > 5 * scales[0]  # the stem's lr is pulled up to the floor
    assert late[0] > scales[0] * BASE_LR  # above its own starting lr: "decay" now raises the stem

    optimizer, scales = layer_decayed_optimizer()
    lrs = trace(optimizer, timm_cosine(warmup_t=5, warmup_lr_init=1e-4, lr_min=1e-5)(optimizer))
    assert lrs[0] == [1e-4] * len(scales)  # warmup starts every group at the same lr


def test_timm_schedulers_with_floors_keep_ratios_on_lr_scale_groups():
    """The alternative for timm's floors: groups without lr, whose lr_scale timm applies to the
    whole schedule, floors and warmup included."""
    optimizer, scales = layer_decayed_optimizer(with_lr=False)
    build = timm_cosine(warmup_t=5, warmup_lr_init=1e-4, lr_min=1e-5)
    lrs = trace(optimizer, build(optimizer))
    reference = single_group_optimizer()
    schedule = [row[0] for row in trace(reference, build(reference))]
    for t in range(STEPS):
        assert lrs[t] == pytest.approx([schedule[t] * s for s in scales], rel=1e-9)


def test_the_optimizer_step_uses_each_groups_lr():
    """The decay reaches the weights: one SGD step moves each layer by -lr_layer x grad."""
    model = make_model()
    optimizer = torch.optim.SGD(auto_layer_decay(model, lr=0.1, layer_decay=0.5, weight_decay=0.0), lr=0.1)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    for p in model.parameters():
        p.grad = torch.ones_like(p)
    optimizer.step()
    for group in optimizer.param_groups:
        for name in group["param_names"]:
            moved = before[name] - dict(model.named_parameters())[name].detach()
            assert torch.allclose(moved, torch.full_like(moved, 0.1 * group["scale"])), name
