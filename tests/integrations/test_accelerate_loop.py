"""A custom accelerate loop across two real processes. ``accelerate launch --cpu`` starts one
process unless MPI is set up; ``--multi_gpu`` on a machine without GPUs starts two CPU processes
through torchrun (gloo), which is what this runs."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from processes import free_port

SCRIPT = Path(__file__).resolve().parents[1] / "distributed" / "accelerate_loop.py"


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
