"""``LayerDecayTrainer`` with ``deepspeed=``, the ZeRO stage given on the command line, and a mode:

* ``client``: no optimizer section; the Trainer's own optimizer from layer-decayed groups goes to
  DeepSpeed as its client optimizer;
* ``section``: an ``AdamW`` optimizer section and a ``WarmupCosineLR`` scheduler section with
  ``"auto"`` values: DeepSpeed builds both, from the layer-decayed groups. Also records what the
  library's checks make of the engine's optimizer, the per-layer lrs the Trainer logged, the
  refusal of a ``WarmupLR`` section whose ``warmup_max_lr`` is ``"auto"``, and what resuming the
  run's checkpoint with another ``layer_decay`` does.

Run by ``torchrun --nproc_per_node 2`` on CPUs; writes ``rank<r>.json`` with the lr of every group
by name after each step and the optimizer's class."""

import json
import os
import sys
from pathlib import Path

os.environ.setdefault("DS_ACCELERATOR", "cpu")

import deepspeed.ops  # noqa: E402
import torch.distributed as dist  # noqa: E402
from transformers import TrainerCallback  # noqa: E402

from hf_timm_layerdecay import LayerDecayTrainer, LayerDecayTrainingArguments  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/ helpers
sys.path.insert(0, str(Path(__file__).resolve().parent))
from deepspeed_train import checks  # noqa: E402
from trainer_setup import ToyDataset, tiny_bert  # noqa: E402


class LearningRates(TrainerCallback):
    def __init__(self) -> None:
        self.steps: list[dict] = []

    def on_step_end(self, args, state, control, optimizer=None, **kwargs):
        self.steps.append({g.get("name"): g["lr"] for g in optimizer.param_groups})


SECTIONS = {
    "optimizer": {"type": "AdamW", "params": {"lr": "auto", "weight_decay": "auto", "torch_adam": True}},
    "scheduler": {"type": "WarmupCosineLR",
                  "params": {"total_num_steps": "auto", "warmup_num_steps": "auto", "warmup_min_ratio": 0.5,
                             "warmup_type": "linear"}},
}


def make_trainer(out: Path, config: dict, recorder: TrainerCallback, layer_decay: float = 0.5,
                 save: bool = False) -> LayerDecayTrainer:
    # warmup_steps fills the sections' "auto" warmup (the linear schedule of the client mode has none)
    args = LayerDecayTrainingArguments(warmup_steps=2 if "scheduler" in config else 0,
        output_dir=str(out), learning_rate=1e-3, per_device_train_batch_size=4, max_steps=3, lr_scheduler_type="linear",
        weight_decay=0.0, report_to=[], deepspeed=config, use_cpu=True, disable_tqdm=True,
        save_strategy="steps" if save else "no", save_steps=3, logging_steps=1, log_lr_per_layer=True)
    return LayerDecayTrainer(model=tiny_bert(layers=2), args=args, train_dataset=ToyDataset(size=32),
                             layer_decay=layer_decay, callbacks=[recorder])


def resume_with_other_decay(out: Path, config: dict) -> str:
    """Resuming the run's checkpoint with layer_decay 0.9: the error, or the lrs the run went on with."""
    recorder = LearningRates()
    trainer = make_trainer(out, config, recorder, layer_decay=0.9)
    try:
        trainer.train(resume_from_checkpoint=str(out / "checkpoint-3"))
    except Exception as exc:  # noqa: BLE001 - recorded for the test to assert on
        return f"{type(exc).__name__}: {exc}"
    return f"resumed: {recorder.steps}"


def trainer_checks(trainer: LayerDecayTrainer) -> dict:
    """What check_param_groups and layer_decay_report make of the prepared optimizer, and the
    per-layer lrs the Trainer logged."""
    return {**checks(trainer.optimizer, trainer.model),
            "logged": [{k: v for k, v in entry.items() if k.startswith("learning_rate")}
                       for entry in trainer.state.log_history if "learning_rate" in entry]}


def refusal(out: Path, stage: int) -> str:
    """The error for a WarmupLR section that warms every group up to learning_rate ("auto")."""
    config = {"train_micro_batch_size_per_gpu": "auto", "zero_optimization": {"stage": stage},
              "scheduler": {"type": "WarmupLR", "params": {"warmup_max_lr": "auto", "warmup_num_steps": 2}}}
    try:
        make_trainer(out, config, LearningRates())
    except ValueError as exc:
        return str(exc)
    return ""


def main(out: Path, stage: int, mode: str) -> None:
    deepspeed.ops.__compatible_ops__["deepspeed_shm_comm"] = False  # no C++ build for the shared-memory comm
    config = {"train_micro_batch_size_per_gpu": "auto", "gradient_accumulation_steps": "auto",
              "zero_optimization": {"stage": stage}, "zero_allow_untested_optimizer": True}
    if mode == "section":
        config.update(SECTIONS)
    recorder = LearningRates()
    trainer = make_trainer(out, config, recorder, save=mode == "section")
    trainer.train()
    record = {"optimizer": type(trainer.optimizer).__name__, "steps": recorder.steps,
              "deepspeed": trainer.is_deepspeed_enabled,
              "inner": type(getattr(trainer.optimizer, "optimizer", None)).__name__}
    if mode == "section":
        record.update(trainer_checks(trainer), refusal=refusal(out, stage), resume=resume_with_other_decay(out, config))
    (out / f"rank{dist.get_rank()}.json").write_text(json.dumps(record))
    dist.barrier()  # both ranks done before either exits (see deepspeed_train.py)
    dist.destroy_process_group()


if __name__ == "__main__":
    main(Path(sys.argv[1]), int(sys.argv[2]), sys.argv[3] if len(sys.argv) > 3 else "client")
