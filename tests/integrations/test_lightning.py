"""Lightning: ``lightning.Trainer`` on the CPU with create_optimizer in configure_optimizers, a
torch scheduler stepped by Lightning, LearningRateMonitor and our callbacks; in one process and
under ``strategy="ddp"`` with two."""

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("lightning")

from hf_timm_layerdecay.api import resolve_layer_map  # noqa: E402

DISTRIBUTED = Path(__file__).resolve().parents[1] / "distributed"
sys.path.insert(0, str(DISTRIBUTED))
from lightning_train import BASE_LR, DECAY, STEPS, Classifier, train  # noqa: E402

HEAD = 4  # tiny BERT: embeddings 0, blocks 1-3, head 4


def layer_of_group(name: str) -> int:
    return int(name.split("_")[1])


def check_steps(steps: list[dict], ids: dict[str, int]) -> None:
    assert len(steps) == STEPS
    for step, record in enumerate(steps):
        schedule = 1.0 - step / STEPS
        for name, lr in record["lrs"].items():
            assert lr == pytest.approx(BASE_LR * schedule * DECAY ** (HEAD - layer_of_group(name)), rel=1e-12), name
        # gradual unfreezing, one layer per step: step k trains layers HEAD - k .. HEAD
        assert {ids[n] for n in record["moved"]} == set(range(HEAD - step, HEAD + 1)), step


def test_lightning_trainer_keeps_the_decay_and_unfreezes_layer_by_layer(tmp_path):
    trainer = train(tmp_path)
    record = json.loads((tmp_path / "rank0.json").read_text())
    ids = resolve_layer_map(Classifier()).ids
    check_steps(record["steps"], ids)
    assert sum(len(g) for g in record["groups"]) == len(ids)  # every layer grouped from the start
    rows = list(csv.DictReader(open(next((tmp_path / "logs").rglob("metrics.csv")))))
    # LearningRateMonitor: one series per group, named by the group (weight_decay=0: one group per
    # layer); LayerDecayMonitor: one per layer whatever the groups
    lr_monitor = {k: float(v) for row in rows[:1] for k, v in row.items() if k.startswith("lr-AdamW/") and v}
    assert lr_monitor == pytest.approx({f"lr-AdamW/layer_{i}": BASE_LR * DECAY ** (HEAD - i) for i in range(HEAD + 1)})
    by_layer = [{k: float(v) for k, v in row.items() if k.startswith("lr-layer_") and v} for row in rows]
    by_layer = [row for row in by_layer if row]
    assert len(by_layer) == STEPS
    for step, row in enumerate(by_layer):
        assert row == pytest.approx({f"lr-layer_{i}": BASE_LR * (1 - step / STEPS) * DECAY ** (HEAD - i)
                                     for i in range(HEAD + 1)}, rel=1e-6)
    assert trainer.global_step == STEPS


def run_ddp(out: Path, strategy: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(DISTRIBUTED / "lightning_train.py"), str(out), strategy],
                          capture_output=True, text=True, timeout=600,
                          env={**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join(sys.path)})


def test_lightning_ddp_two_processes(tmp_path):
    done = run_ddp(tmp_path, "ddp_find_unused_parameters_true")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    rank0, rank1 = (json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1))
    assert rank0["world_size"] == 2 and rank0["groups"] == rank1["groups"]
    assert rank0["steps"] == rank1["steps"]  # the same lrs, the same layers moving, on both ranks
    ids = {"model." + n: i for n, i in resolve_layer_map(Classifier().model).ids.items()}
    check_steps(rank0["steps"], ids)


def test_plain_ddp_is_refused_with_the_fix(tmp_path):
    """Plain DDP fails at the first step where a frozen layer gets no gradient (what the two-process
    run above shows without find_unused_parameters): the callback refuses it when training starts."""
    import torch
    import torch.distributed as dist

    from hf_timm_layerdecay.integrations.lightning import _refuse_ddp_without_unused_parameters

    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    try:
        plain = torch.nn.parallel.DistributedDataParallel(torch.nn.Linear(2, 2))
        with pytest.raises(ValueError, match="Use strategy='ddp_find_unused_parameters_true'"):
            _refuse_ddp_without_unused_parameters(plain)
        _refuse_ddp_without_unused_parameters(
            torch.nn.parallel.DistributedDataParallel(torch.nn.Linear(2, 2), find_unused_parameters=True))
    finally:
        dist.destroy_process_group()
