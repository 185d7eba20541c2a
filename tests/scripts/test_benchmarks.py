"""The benchmark scripts run (``--quick``) and print their tables.

Timings are not asserted (they belong to the scripts' output, see docs/benchmarks.md); what is
asserted is what does not depend on the machine: the sections are there, the groups hold the
model's own parameters, and the profiled op counts grow with the number of groups.
"""

import re
import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


def run_quick(script: str) -> str:
    result = subprocess.run(
        [sys.executable, str(BENCHMARKS / script), "--quick"], capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


@pytest.mark.parametrize("script", ["group_building.py", "optimizer_step.py"])
def test_help(script):
    result = subprocess.run([sys.executable, str(BENCHMARKS / script), "--help"], capture_output=True, text=True)
    assert result.returncode == 0 and "--quick" in result.stdout


def test_group_building_quick():
    out = run_quick("group_building.py")
    for title in ("1. Building groups", "2. Scaling", "3. Merging", "4. Memory"):
        assert title in out
    models = out.split("1. Building groups", 1)[1].split("2. Scaling", 1)[0]
    (row,) = table_rows(models, "ViT-S/16 (timm)")
    assert row[-4:] == ["1", "2", "28 (14 ids)", "28"]  # walks of the module tree (ours, timm's), groups
    memory = out.split("4. Memory", 1)[1]
    (row,) = table_rows(memory, "ViT-S/16 (timm)")
    assert row[-2:] == ["yes", "yes"]  # the groups hold the model's own parameters, with the same storage
    assert float(row[4]) == 0.0  # torch allocated nothing during the call


def table_rows(out: str, model: str) -> list[list[str]]:
    return [[c.strip() for c in line.strip("|").split("|")] for line in out.splitlines() if line.startswith(f"| {model}")]


def test_optimizer_step_quick():
    out = run_quick("optimizer_step.py")
    rows = table_rows(out, "ViT-S/16")
    counts = {(r[1], r[2]): (int(r[3]), int(r[4])) for r in rows if len(r) == 11}  # (AdamW, grouping): (groups, ops)
    for implementation in ("foreach", "fused"):
        single_groups, single_ops = counts[(implementation, "single")]
        groups, ops = counts[(implementation, "ours")]
        assert single_groups == 1 and groups == 28
        # the multi-tensor ops are issued once per group: the cost of layer decay is per group, not per tensor
        assert ops == pytest.approx(groups * single_ops, rel=0.1)
    assert re.search(r"## The optimizer step", out)


def test_step_timing_checks_the_free_memory_of_the_device_it_runs_on(monkeypatch):
    """On a GPU the optimizer states go to the GPU: the check before each model reads its free
    memory, not the host's (a 139 GiB GPU behind a 24 GiB host, or the other way round)."""
    import torch

    monkeypatch.syspath_prepend(str(BENCHMARKS))
    import optimizer_step

    asked = []
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device: asked.append(device) or (3 * 2**30, 80 * 2**30))
    assert optimizer_step.available_bytes("cuda:1") == 3 * 2**30
    assert asked == [torch.device("cuda:1")]
    assert optimizer_step.available_bytes("cpu") not in (None, 3 * 2**30) and asked == [torch.device("cuda:1")]
