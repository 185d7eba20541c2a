"""A custom training loop with accelerate, as the README shows it: create_optimizer, a
transformers schedule, Accelerator.prepare; run by ``accelerate launch --multi_gpu --num_processes 2``,
which without GPUs starts two CPU processes (torchrun, gloo).

Writes ``rank<r>.json``: per step, the lr of every layer id (read from the prepared optimizer),
check_lr_ratios' findings, the loss, and how far each layer's weights moved in the first step.
"""

import json
import sys
from pathlib import Path

import torch
from accelerate import Accelerator
from transformers import get_cosine_schedule_with_warmup

from hf_timm_layerdecay import check_lr_ratios, create_optimizer

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/ helpers
from trainer_setup import ToyDataset, tiny_bert  # noqa: E402


def main(out: Path) -> None:
    accelerator = Accelerator(cpu=True)  # the launcher starts the processes; this machine has no GPU
    model = tiny_bert()
    optimizer = create_optimizer(model, "adamw", lr=1e-3, layer_decay=0.5, weight_decay=0.01)
    scheduler = get_cosine_schedule_with_warmup(optimizer, num_warmup_steps=0, num_training_steps=6)
    loader = torch.utils.data.DataLoader(ToyDataset(size=32), batch_size=4)
    model, optimizer, loader, scheduler = accelerator.prepare(model, optimizer, loader, scheduler)
    names = {id(p): n for n, p in accelerator.unwrap_model(model).named_parameters()}
    steps, moved = [], {}
    for step, batch in enumerate(loader):
        if step == 3:
            break
        before = {id(p): p.detach().clone() for g in optimizer.param_groups for p in g["params"]}
        lrs = {g["layer_id"]: g["lr"] for g in optimizer.param_groups}  # the lrs this step uses
        loss = model(**batch).loss
        accelerator.backward(loss)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad()
        if step == 0:
            for g in optimizer.param_groups:
                for p in g["params"]:
                    moved.setdefault(g["layer_id"], []).append((p.detach() - before[id(p)]).abs().max().item())
        steps.append({"lrs": lrs, "problems": check_lr_ratios(optimizer, warn=False), "loss": loss.item()})
    record = {
        "rank": accelerator.process_index,
        "world_size": accelerator.num_processes,
        "optimizer": type(optimizer).__name__,
        "steps": steps,
        "moved": {str(k): max(v) for k, v in moved.items()},
        "groups": [[names[id(p)] for p in g["params"]] for g in optimizer.param_groups],
    }
    (out / f"rank{accelerator.process_index}.json").write_text(json.dumps(record))


if __name__ == "__main__":
    main(Path(sys.argv[1]))
