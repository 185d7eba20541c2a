"""Layer decay across real processes: torchrun --nproc_per_node 2 on CPU (gloo)."""

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from hf_timm_layerdecay import create_optimizer
from hf_timm_layerdecay.adapters.wrappers import canonical_name
from trainer_setup import tiny_bert

SCRIPT = Path(__file__).parent / "distributed" / "train.py"
TORCHRUN = shutil.which("torchrun", path=os.path.dirname(sys.executable)) or shutil.which("torchrun")


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def launch(mode, out):
    command = [TORCHRUN, "--nproc_per_node", "2", "--master_addr", "127.0.0.1", "--master_port", str(free_port()),
               str(SCRIPT), mode, str(out)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return [json.loads((out / f"rank{r}.json").read_text()) for r in (0, 1)]


def expected_groups():
    """What one process builds for the bare model: the reference for every distributed mode."""
    optimizer = create_optimizer(tiny_bert(), "adamw", lr=1e-3, layer_decay=0.5, weight_decay=0.01)
    return [(g["name"], g["lr"], g["weight_decay"], g["param_names"]) for g in optimizer.param_groups]


@pytest.mark.parametrize("mode", ["trainer-ddp", "fsdp2", "fsdp1"])
def test_groups_are_identical_on_every_rank_and_match_one_process(tmp_path, mode):
    rank0, rank1 = launch(mode, tmp_path)
    assert rank0["world_size"] == 2
    assert rank0["groups"] == rank1["groups"]
    assert rank0["losses"] == rank1["losses"] and len(rank0["losses"]) == 3
    lr_key = "initial_lr" if mode == "trainer-ddp" else "lr"  # the Trainer's linear schedule moved "lr"
    got = [
        (g["name"], g[lr_key], g["weight_decay"], [canonical_name(n) for n in g["param_names"]])
        for g in rank0["groups"]
    ]
    assert got == expected_groups()
    if mode == "fsdp2":
        assert {t for g in rank0["groups"] for t in g["param_types"]} == {"DTensor"}
