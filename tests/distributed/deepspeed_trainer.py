"""``LayerDecayTrainer`` with ``deepspeed=`` (ZeRO stage given on the command line, no optimizer
section): the Trainer's own optimizer from layer-decayed groups goes to DeepSpeed as its client
optimizer. Run by ``torchrun --nproc_per_node 2`` on CPUs; writes ``rank<r>.json`` with the lr of
every group by name after each step and the optimizer's class."""

import json
import os
import sys
from pathlib import Path

os.environ.setdefault("DS_ACCELERATOR", "cpu")

import deepspeed.ops  # noqa: E402
import torch.distributed as dist  # noqa: E402
from transformers import TrainerCallback, TrainingArguments  # noqa: E402

from hf_timm_layerdecay import LayerDecayTrainer  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/ helpers
from trainer_setup import ToyDataset, tiny_bert  # noqa: E402


class LearningRates(TrainerCallback):
    def __init__(self) -> None:
        self.steps: list[dict] = []

    def on_step_end(self, args, state, control, optimizer=None, **kwargs):
        self.steps.append({g.get("name"): g["lr"] for g in optimizer.param_groups})


def main(out: Path, stage: int) -> None:
    deepspeed.ops.__compatible_ops__["deepspeed_shm_comm"] = False  # no C++ build for the shared-memory comm
    config = {"train_micro_batch_size_per_gpu": "auto", "gradient_accumulation_steps": "auto",
              "zero_optimization": {"stage": stage}, "zero_allow_untested_optimizer": True}
    args = TrainingArguments(output_dir=str(out), learning_rate=1e-3, per_device_train_batch_size=4, max_steps=3,
                             lr_scheduler_type="linear", weight_decay=0.0, report_to=[], deepspeed=config,
                             use_cpu=True, save_strategy="no", disable_tqdm=True)
    recorder = LearningRates()
    trainer = LayerDecayTrainer(model=tiny_bert(layers=2), args=args, train_dataset=ToyDataset(size=32),
                                layer_decay=0.5, callbacks=[recorder])
    trainer.train()
    record = {"optimizer": type(trainer.optimizer).__name__, "steps": recorder.steps,
              "deepspeed": trainer.is_deepspeed_enabled}
    (out / f"rank{dist.get_rank()}.json").write_text(json.dumps(record))


if __name__ == "__main__":
    main(Path(sys.argv[1]), int(sys.argv[2]))
