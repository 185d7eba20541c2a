"""Layer decay across real processes: torchrun --nproc_per_node 2 on CPU (gloo)."""

import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import transformers

from hf_timm_layerdecay import create_optimizer
from hf_timm_layerdecay.adapters.wrappers import canonical_name
from processes import free_port
from trainer_setup import tiny_bert, tiny_qwen3_moe

SCRIPT = Path(__file__).resolve().parents[1] / "distributed" / "train.py"
TORCHRUN = shutil.which("torchrun", path=os.path.dirname(sys.executable)) or shutil.which("torchrun")


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


@pytest.mark.skipif(
    int(transformers.__version__.split(".")[0]) < 5,
    reason="loading with DistributedConfig(ep_size=..., tp_size=...) is transformers 5's",
)
def test_expert_and_tensor_parallel_groups_are_split_by_mesh_and_train_with_fused_adamw(tmp_path):
    """transformers' own EP + TP loading (DistributedConfig(ep_size=2, tp_size=2)) puts a layer's
    attention on the tp mesh, its experts on ep and its router plain: one group per layer and
    weight decay would make fused AdamW raise at the first step. Split by mesh, every tensor
    keeps its layer's lr and weight decay and moves by that lr."""
    reference = tiny_qwen3_moe()
    reference.save_pretrained(tmp_path / "checkpoint")
    expected = {
        name: (group["lr"], group["weight_decay"])
        for group in create_optimizer(reference, "adamw", lr=1e-3, layer_decay=0.5, weight_decay=0.01).param_groups
        for name in group["param_names"]
    }
    rank0, rank1 = launch("ep-tp", tmp_path)
    assert rank0["groups"] == rank1["groups"] and rank0["losses"] == rank1["losses"]
    assert len(rank0["losses"]) == 3 and all(math.isfinite(loss) for loss in rank0["losses"])
    groups = rank0["groups"]
    assert all(len(g["meshes"]) == 1 for g in groups)  # one kernel call per group can take each
    split = [(g["name"], g["meshes"][0]) for g in groups if g["layer_id"] == 1 and "@" in g["name"]]
    assert split == [("layer_1_decay@tp", "tp"), ("layer_1_decay@ep", "ep"), ("layer_1_decay@plain", "plain")]
    got = {name: (g["lr"], g["weight_decay"]) for g in groups for name in g["param_names"]}
    assert got == expected  # every tensor: the lr and weight decay of the single-process groups
    assert expected["model.layers.0.mlp.experts.down_proj"] == (1e-3 * 0.5**2, 0.01)
    for name, (lr, _) in expected.items():  # Adam's first step moves the largest entry by ~lr
        assert rank0["moved_in_first_step"][name] == pytest.approx(lr, rel=0.02), name
