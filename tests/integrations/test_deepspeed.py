"""DeepSpeed's own schedulers on layer-decayed groups: which keep every group's lr at its layer
scale, and ``deepspeed_layer_decay_problems`` naming exactly the others. The classes are
DeepSpeed's real ones (``deepspeed.runtime.lr_schedules``), run on a torch optimizer; no process
group is needed."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

pytest.importorskip("deepspeed")
os.environ.setdefault("DS_ACCELERATOR", "cpu")

from deepspeed.runtime import lr_schedules  # noqa: E402

from hf_timm_layerdecay import check_lr_ratios, create_optimizer  # noqa: E402
from hf_timm_layerdecay.integrations.deepspeed import deepspeed_layer_decay_problems, frozen_group_problem  # noqa: E402
from processes import free_port  # noqa: E402

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


SCRIPT = Path(__file__).resolve().parents[1] / "distributed" / "deepspeed_train.py"


def test_zero_stages_1_2_3_keep_every_layer_at_its_lr_on_two_processes(tmp_path):
    """``tests/distributed/deepspeed_train.py`` under torchrun: ZeRO 1, 2 and 3 on two CPU processes."""
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
               "--master_port", str(free_port()), str(SCRIPT), str(tmp_path)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "OMP_NUM_THREADS": "1", "DS_ACCELERATOR": "cpu"})
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    rank0, rank1 = (json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1))
    assert rank0["world_size"] == 2
    # the linear schedule 1 - step / 6 times each group's scale: 0.5 ** (3 - id), x2 on the head's bias,
    # whose group holds one element for two ranks
    scale = {"layer_0": 0.125, "layer_1": 0.25, "layer_2": 0.5, "layer_3": 1.0, "layer_3_no_decay_lr_x2": 2.0}
    for stage in ("1", "2", "3"):
        record = rank0["stages"][stage]
        assert record["steps"] == rank1["stages"][stage]["steps"], stage  # both ranks see the same lrs
        assert record["group_names"] == list(scale)
        for step, seen in enumerate(record["steps"]):
            assert seen["lrs"] == pytest.approx({g: LR * s * (1 - step / 6) for g, s in scale.items()}, rel=1e-12)
            assert seen["problems"] == []
        # the groups hold DeepSpeed's flat partitions (stages 1, 2) or nothing (3): checked by their names,
        # every element counted once
        assert record["check"] == "ok" and record["coverage_ok"], record["check"]
        assert record["report"]["layer_3_no_decay_lr_x2"] == [1, 1]
        assert sum(elements for _, elements in record["report"].values()) == 1600 + 2 * 2224 + 288 + 1
        # AdamW's first step moves each weight by about its lr: layer i by 1e-3 x 0.5 ** (3 - i), the head's
        # bias by twice the head's lr; exactly as the same step without DeepSpeed
        assert record["moved"] == pytest.approx(rank0["plain"], rel=1e-3)
        assert record["moved"] == pytest.approx({"0": 1.25e-4, "1": 2.5e-4, "2": 5e-4, "3": 2e-3}, rel=0.01)
        # DeepSpeed's load_checkpoint loads through the client optimizer, which refuses other groups
        assert record["resume"].startswith("ResumeMismatchError: the checkpoint's optimizer has other parameter groups "
                                           "than this run: group 0 (layer_0): scale 0.125 in the checkpoint, 0.729 now")
    # a group whose parameters are all frozen: ZeRO-2 fails on it, ZeRO-3 takes it (what frozen_group_problem says)
    assert rank0["frozen_only_group"] == {"2": "IndexError", "3": "ok"}


def test_frozen_only_groups_are_refused_for_zero_1_and_2_only():
    frozen = torch.nn.Parameter(torch.ones(2), requires_grad=False)
    groups = [{"name": "layer_1_decay", "params": [frozen]}, {"name": "layer_2_decay", "params": [torch.nn.Parameter(torch.ones(2))]}]
    for stage in (1, 2):
        problem = frozen_group_problem(groups, {"zero_optimization": {"stage": stage}})
        assert f"ZeRO stage {stage} cannot take groups without a trainable parameter" in problem
        assert "frozen='include' made 1: layer_1_decay" in problem and "frozen='skip'" in problem
    assert frozen_group_problem(groups, {"zero_optimization": {"stage": 3}}) is None
    assert frozen_group_problem(groups[1:], {"zero_optimization": {"stage": 2}}) is None


def test_the_trainer_with_a_deepspeed_config_keeps_the_decay(tmp_path):
    """``LayerDecayTrainer(args=TrainingArguments(deepspeed={...ZeRO-2, no optimizer section}))`` on two
    CPU processes: the decayed groups are DeepSpeed's client optimizer, the Trainer's linear schedule
    keeps every layer at head x 0.5 ** (3 - id)."""
    script = SCRIPT.with_name("deepspeed_trainer.py")
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
               "--master_port", str(free_port()), str(script), str(tmp_path), "2"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "OMP_NUM_THREADS": "1", "DS_ACCELERATOR": "cpu"})
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    rank0, rank1 = (json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1))
    assert rank0["deepspeed"] and rank0["optimizer"] == "DeepSpeedOptimizerWrapper"
    assert rank0["steps"] == rank1["steps"] and len(rank0["steps"]) == 3
    for step, lrs in enumerate(rank0["steps"], start=1):  # after step k the linear schedule is at 1 - k / 3
        assert lrs == pytest.approx({f"layer_{i}": LR * (1 - step / 3) * 0.5 ** (3 - i) for i in range(4)}, abs=1e-15)


def test_the_trainer_feeds_the_groups_to_deepspeeds_optimizer_and_scheduler_sections_at_zero_3(tmp_path):
    """``LayerDecayTrainer`` with an ``AdamW`` optimizer section and a ``WarmupCosineLR`` scheduler
    section (``"auto"`` values), ZeRO-3, two CPU processes: transformers hands DeepSpeed a
    ``DummyOptim`` with the parameters in one list; the layer-decay groups replace it and DeepSpeed
    builds AdamW and the schedule from them. The engine's groups are empty (ZeRO-3), the checks read
    them by name; a WarmupLR section with warmup_max_lr "auto" is refused with the fix, and so is
    resuming its checkpoint with another layer_decay."""
    script = SCRIPT.with_name("deepspeed_trainer.py")
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
               "--master_port", str(free_port()), str(script), str(tmp_path), "3", "section"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "OMP_NUM_THREADS": "1", "DS_ACCELERATOR": "cpu"})
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    rank0, rank1 = (json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1))
    assert rank0["optimizer"] == "DeepSpeedOptimizerWrapper" and rank0["inner"] == "DeepSpeedZeroOptimizer_Stage3"
    assert rank0["steps"] == rank1["steps"] and len(rank0["steps"]) == 3
    # WarmupCosineLR over 3 steps, 2 of linear warmup from 0.5: after step k the ratio is 0.5, 0.75, then the
    # cosine's end (cos_min_ratio 1e-4); every layer at ratio x 1e-3 x 0.5 ** (3 - id)
    for ratio, lrs in zip([0.5, 0.75, 1e-4], rank0["steps"]):
        assert lrs == pytest.approx({f"layer_{i}": LR * ratio * 0.5 ** (3 - i) for i in range(4)}, rel=1e-9)
    # the Trainer logs the head's lr as learning_rate, every layer's beside it
    for ratio, logged in zip([0.5, 0.75, 1e-4], rank0["logged"]):
        assert logged["learning_rate"] == pytest.approx(LR * ratio, rel=1e-9)
        assert logged["learning_rate_layer_0"] == pytest.approx(LR * ratio / 8, rel=1e-9)
    # ZeRO-3's groups hold no tensors: check_param_groups / layer_decay_report read their names through
    # accelerate's wrapper; elements counted whole (ds_numel): embeddings, 2 blocks, pooler + classifier
    assert rank0["check"] == "ok", rank0["check"]
    assert rank0["report"] == {"layer_0": [5, 1600], "layer_1": [16, 2224], "layer_2": [16, 2224], "layer_3": [4, 306]}
    assert rank0["refusal"].startswith("LayerDecayTrainer with layer_decay=0.5 and this DeepSpeed config: the DeepSpeed "
                                       "scheduler WarmupLR has warmup_max_lr=0.001: it writes that one lr into every")
    assert "warmup_max_lr is null" in rank0["refusal"]
    # resuming that run's checkpoint with layer_decay 0.9 is refused before DeepSpeed loads it, on both
    # ranks (the optimizer DeepSpeed built from the section is guarded once it exists)
    for record in (rank0, rank1):
        assert record["resume"].startswith("ResumeMismatchError: the checkpoint's optimizer has other parameter "
                                           "groups than this run: group 0 (layer_0): scale 0.125 in the checkpoint")
