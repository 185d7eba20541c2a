"""A LightningModule trained by ``lightning.Trainer`` on the CPU, as the README shows it:
create_optimizer in configure_optimizers, a step-wise torch scheduler, LearningRateMonitor,
LayerDecayMonitor and GradualUnfreezingFinetuning. Run as a script for DDP (Lightning's launcher
starts the second process by running this file again); the single-process test imports it.

Writes ``rank<r>.json``: per step, the lr of every group (by name) the step used, which layers'
weights moved, and the groups' parameter names.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import lightning
import torch

from hf_timm_layerdecay import create_optimizer
from hf_timm_layerdecay.integrations.lightning import GradualUnfreezingFinetuning, LayerDecayMonitor

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/ helpers
from trainer_setup import ToyDataset, tiny_bert  # noqa: E402

BASE_LR, DECAY, STEPS = 1e-3, 0.5, 4


class Classifier(lightning.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.model = tiny_bert()

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        return self.model(**batch).loss

    def configure_optimizers(self) -> dict:
        optimizer = create_optimizer(self, "adamw", lr=BASE_LR, layer_decay=DECAY, weight_decay=0.0, frozen="include")
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0 - step / STEPS)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}


class Recorder(lightning.Callback):
    """What each step did: the lrs it used, the layers whose weights it moved."""

    def __init__(self) -> None:
        self.steps: list[dict] = []
        self._before: dict = {}

    def on_before_optimizer_step(self, trainer, pl_module, optimizer) -> None:
        self._before = {n: p.detach().clone() for n, p in pl_module.named_parameters()}
        self.steps.append({"lrs": {g["name"]: g["lr"] for g in optimizer.param_groups}})

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        moved = {n for n, p in pl_module.named_parameters() if not torch.equal(p, self._before[n])}
        self.steps[-1]["moved"] = sorted(moved)


def train(out: Path, strategy: str = "auto", devices: int = 1, unfreeze_every: int = 1) -> lightning.Trainer:
    recorder = Recorder()
    module = Classifier()
    trainer = lightning.Trainer(
        accelerator="cpu", devices=devices, strategy=strategy, max_steps=STEPS,
        logger=lightning.pytorch.loggers.CSVLogger(str(out), name="logs"), log_every_n_steps=1,
        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
        callbacks=[lightning.pytorch.callbacks.LearningRateMonitor(logging_interval="step"), LayerDecayMonitor(),
                   GradualUnfreezingFinetuning(every=unfreeze_every), recorder],
    )
    loader = torch.utils.data.DataLoader(ToyDataset(size=64), batch_size=4)
    trainer.fit(module, loader)
    optimizer = trainer.optimizers[0]
    record = {
        "rank": trainer.global_rank,
        "world_size": trainer.world_size,
        "steps": recorder.steps,
        "groups": [g["param_names"] for g in optimizer.param_groups],
    }
    (out / f"rank{trainer.global_rank}.json").write_text(json.dumps(record))
    return trainer


if __name__ == "__main__":
    train(Path(sys.argv[1]), strategy=sys.argv[2], devices=2)
