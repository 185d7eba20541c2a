"""DeepSpeed's own schedulers on layer-decayed groups: which keep every group's lr at its layer
scale, and ``deepspeed_layer_decay_problems`` naming exactly the others. The classes are
DeepSpeed's real ones (``deepspeed.runtime.lr_schedules``), run on a torch optimizer; no process
group is needed."""

import os

import pytest
import torch

pytest.importorskip("deepspeed")
os.environ.setdefault("DS_ACCELERATOR", "cpu")

from deepspeed.runtime import lr_schedules  # noqa: E402

from hf_timm_layerdecay import check_lr_ratios, create_optimizer  # noqa: E402
from hf_timm_layerdecay.integrations.deepspeed import deepspeed_layer_decay_problems  # noqa: E402

LR = 1e-3
SCHEDULERS = [
    ("WarmupLR", {"warmup_min_lr": 0, "warmup_num_steps": 4}),
    ("WarmupLR", {"warmup_min_lr": 0, "warmup_num_steps": 4, "warmup_type": "linear"}),
    ("WarmupLR", {"warmup_min_lr": 0, "warmup_max_lr": LR, "warmup_num_steps": 4}),
    ("WarmupLR", {"warmup_min_lr": 0, "warmup_max_lr": None, "warmup_num_steps": 4}),
    ("WarmupDecayLR", {"total_num_steps": 10, "warmup_num_steps": 4}),
    ("WarmupDecayLR", {"total_num_steps": 10, "warmup_num_steps": 4, "warmup_max_lr": None}),
    ("WarmupCosineLR", {"total_num_steps": 10, "warmup_num_steps": 2}),
    ("WarmupCosineLR", {"total_num_steps": 10, "warmup_num_steps": 2, "warmup_type": "linear", "cos_min_ratio": 0.1}),
    ("OneCycle", {"cycle_min_lr": 1e-4, "cycle_max_lr": LR, "cycle_first_step_size": 3}),
    ("LRRangeTest", {"lr_range_test_min_lr": 1e-4, "lr_range_test_step_size": 2}),
]


def mlp():
    torch.manual_seed(0)
    return torch.nn.Sequential(*[torch.nn.Linear(4, 4) for _ in range(4)])


def keeps_the_decay(kind: str, params: dict) -> bool:
    """Whether DeepSpeed's scheduler keeps every group at head lr x scale over 8 steps."""
    optimizer = create_optimizer(mlp(), "adamw", lr=LR, layer_decay=0.5)
    scheduler = getattr(lr_schedules, kind)(optimizer, **params)
    kept = True
    for _ in range(8):
        optimizer.step()
        scheduler.step()
        if max(g["lr"] for g in optimizer.param_groups) > 0:
            kept &= check_lr_ratios(optimizer, warn=False) == []
    return kept


@pytest.mark.parametrize("kind, params", SCHEDULERS, ids=[f"{k}-{sorted(p)}" for k, p in SCHEDULERS])
def test_problems_name_exactly_the_schedulers_that_lose_the_decay(kind, params):
    problems = deepspeed_layer_decay_problems({"scheduler": {"type": kind, "params": params}})
    assert (problems == []) == keeps_the_decay(kind, params), problems


def test_the_trainers_auto_value_is_one_lr():
    # transformers fills "auto" with learning_rate: one number for every group
    problems = deepspeed_layer_decay_problems({"scheduler": {"type": "WarmupLR", "params": {"warmup_max_lr": "auto"}}})
    assert "warmup_max_lr='auto'" in problems[0] and "one lr into every" in problems[0]
    assert not keeps_the_decay("WarmupLR", {"warmup_min_lr": 0, "warmup_max_lr": LR, "warmup_num_steps": 4})


def test_older_deepspeed_warmup_lr_default_is_one_lr():
    config = {"scheduler": {"type": "WarmupLR", "params": {"warmup_num_steps": 4}}}
    assert deepspeed_layer_decay_problems(config, deepspeed_version="0.19.8") == []
    assert "(DeepSpeed 0.17.6's default)" in deepspeed_layer_decay_problems(config, deepspeed_version="0.17.6")[0]
