"""Custom accelerate loops across two real processes, with and without the DeepSpeed plugin
(``accelerate_optimizer``'s refusals are in ``tests/bad_inputs/test_bad_accelerate.py``).
``accelerate launch --cpu`` starts one process unless MPI is set up; ``--multi_gpu`` (or
``--use_deepspeed``) on a machine without GPUs starts two CPU processes through torchrun (gloo),
which is what these run."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from processes import free_port

SCRIPT = Path(__file__).resolve().parents[1] / "distributed" / "accelerate_loop.py"
DEEPSPEED_SCRIPT = SCRIPT.with_name("accelerate_deepspeed_loop.py")


def test_accelerate_launch_keeps_the_decay_on_both_processes(tmp_path):
    command = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
               "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
               "--main_process_port", str(free_port()), str(SCRIPT), str(tmp_path)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    rank0, rank1 = (json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1))
    assert rank0["world_size"] == 2 and rank0["optimizer"] == "AcceleratedOptimizer"
    assert rank0["groups"] == rank1["groups"]
    assert [s["lrs"] for s in rank0["steps"]] == [s["lrs"] for s in rank1["steps"]]
    # cosine over 6 steps without warmup: accelerate's scheduler wrapper steps the schedule once per
    # process and step (the loader is split between them), so the head goes 1e-3, 7.5e-4, 2.5e-4;
    # every layer keeps head x 0.5 ** (4 - id) at every step
    heads = []
    for step in rank0["steps"]:
        lrs = {int(k): v for k, v in step["lrs"].items()}
        assert sorted(lrs) == [0, 1, 2, 3, 4]
        for layer, lr in lrs.items():
            assert lr == pytest.approx(lrs[4] * 0.5 ** (4 - layer), rel=1e-9)
        assert step["problems"] == []
        heads.append(lrs[4])
    assert heads == pytest.approx([1e-3, 7.5e-4, 2.5e-4])
    # AdamW's first step moves each weight by about its lr (m / sqrt(v) = sign of the gradient):
    # the largest move in layer i is 1e-3 x 0.5 ** (4 - i), the stem's 16x below the head's
    moved = {int(k): v for k, v in rank0["moved"].items()}
    for layer in range(5):
        assert moved[layer] == pytest.approx(1e-3 * 0.5 ** (4 - layer), rel=0.05)


#: ``accelerate launch --use_deepspeed`` modes of the script: the DeepSpeed config each runs with
DEEPSPEED_MODES = {
    "sections": {"zero_optimization": {"stage": 3},
                 "optimizer": {"type": "AdamW", "params": {"lr": "auto", "weight_decay": "auto", "torch_adam": True}},
                 "scheduler": {"type": "WarmupCosineLR",
                               "params": {"total_num_steps": "auto", "warmup_num_steps": "auto",
                                          "warmup_min_ratio": 0.5, "warmup_type": "linear"}}},
    "callable": {"zero_optimization": {"stage": 2},
                 "optimizer": {"type": "AdamW", "params": {"lr": "auto", "weight_decay": "auto", "torch_adam": True}}},
    "client": {"zero_optimization": {"stage": 1}},
}


@pytest.mark.parametrize("mode", list(DEEPSPEED_MODES))
def test_accelerate_launch_with_deepspeed_keeps_the_decay(tmp_path, mode):
    """``tests/distributed/accelerate_deepspeed_loop.py`` under ``accelerate launch --use_deepspeed``,
    two CPU processes: ZeRO-3 with optimizer and scheduler sections (``DummyOptim`` from
    ``accelerate_optimizer``, ``DummyScheduler``), ZeRO-2 with an optimizer section and a torch
    schedule (``lr_scheduler_callable``), ZeRO-1 with the client optimizer."""
    pytest.importorskip("deepspeed")
    config = tmp_path / "ds.json"
    config.write_text(json.dumps({"train_micro_batch_size_per_gpu": 4, "gradient_accumulation_steps": 1,
                                  "gradient_clipping": 0.0, **DEEPSPEED_MODES[mode]}))
    command = [sys.executable, "-m", "accelerate.commands.launch", "--use_deepspeed", "--deepspeed_config_file",
               str(config), "--num_processes", "2", "--num_machines", "1", "--mixed_precision", "no",
               "--dynamo_backend", "no", "--main_process_port", str(free_port()), str(DEEPSPEED_SCRIPT), mode,
               str(tmp_path)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "OMP_NUM_THREADS": "1", "DS_ACCELERATOR": "cpu"})
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    rank0, rank1 = (json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1))
    assert rank0["world_size"] == 2 and rank0["stage"] == DEEPSPEED_MODES[mode]["zero_optimization"]["stage"]
    assert rank0["built"] == ("AdamW" if mode == "client" else "DummyOptim")
    assert rank0["optimizer"] == "DeepSpeedOptimizerWrapper"
    assert rank0["steps"] == rank1["steps"]  # both ranks see the same lrs
    # each group at the head's lr x 0.5 ** (3 - id), x2 on the head's bias (a one-element group)
    scale = {"layer_0": 0.125, "layer_1": 0.25, "layer_2": 0.5, "layer_3": 1.0, "layer_3_no_decay_lr_x2": 2.0}
    heads = []
    for seen in rank0["steps"]:
        head = seen["lrs"]["layer_3"]
        assert seen["lrs"] == pytest.approx({g: head * s for g, s in scale.items()}, rel=1e-12)
        assert seen["problems"] == []
        heads.append(head / 1e-3)
    if mode == "sections":  # DeepSpeed's WarmupCosineLR: lr 0 before its first step, then 0.5 -> 1 over 2 steps
        assert heads == pytest.approx([0.0, 0.5, 0.75])
    elif mode == "callable":  # the torch schedule 1 - step / 6, stepped by DeepSpeed's engine once a step
        assert heads == pytest.approx([1.0, 5 / 6, 4 / 6])
    else:  # accelerate steps a torch schedule of a client optimizer itself: ratios kept, values its own
        assert heads[0] == 1.0 and heads[0] > heads[1] > heads[2] > 0
    # ZeRO's groups hold flat partitions or nothing (3): the checks read them by name
    assert rank0["check"] == "ok" and rank0["coverage_ok"]
    assert sum(elements for _, elements in rank0["report"].values()) == 1600 + 2 * 2224 + 288 + 1
    # the first step that moves moves each layer as the same step without accelerate or DeepSpeed
    assert rank0["moved"] == pytest.approx(rank0["plain"], rel=1e-3)
    lr = {str(i): s * heads[rank0["moved_at"]] * 1e-3 for i, s in enumerate((0.125, 0.25, 0.5, 2.0))}
    if rank0["moved_at"] == 0:  # Adam's first step moves each weight by its lr
        assert rank0["moved"] == pytest.approx(lr, rel=0.01)
    # load_state of this run's checkpoint in a run with layer_decay 0.9 is refused, on both ranks
    for record in (rank0, rank1):
        assert record["resume"].startswith("ResumeMismatchError: the checkpoint's optimizer has other parameter groups "
                                           "than this run: group 0 (layer_0): scale 0.125 in the checkpoint, 0.729 now")
    assert rank0["resume_same"] == "loaded"
