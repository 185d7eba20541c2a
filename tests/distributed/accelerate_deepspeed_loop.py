"""A custom accelerate loop with the DeepSpeed plugin, as the README shows it: run by
``accelerate launch --use_deepspeed --deepspeed_config_file <config> --num_processes 2`` on CPUs
(DeepSpeed's CPU accelerator, gloo). The mode names what the config holds:

* ``sections`` (ZeRO-3): an ``AdamW`` optimizer section and a ``WarmupCosineLR`` scheduler section
  with ``"auto"`` values; ``accelerate_optimizer`` gives a ``DummyOptim`` holding the layer-decay
  groups, ``DummyScheduler`` stands for the section;
* ``callable`` (ZeRO-2): an ``AdamW`` optimizer section and no scheduler section; a torch schedule
  built on DeepSpeed's optimizer through ``DummyScheduler(lr_scheduler_callable=...)``;
* ``client`` (ZeRO-1): no sections; ``accelerate_optimizer`` gives a torch AdamW, DeepSpeed's
  client optimizer, with a torch schedule.

Writes ``rank<r>.json``: per step the lr of every group by name, ``check_lr_ratios``' findings,
``check_param_groups`` / ``layer_decay_report`` on the prepared optimizer, how far each layer moved
in the first step that moves (beside the same steps without accelerate or DeepSpeed, rank 0),
and, after ``save_state``, what ``load_state`` of it does in a run with another ``layer_decay``
and in one with the same.
"""

import json
import os
import sys
from pathlib import Path

os.environ.setdefault("DS_ACCELERATOR", "cpu")

import deepspeed.ops  # noqa: E402
import torch  # noqa: E402
from accelerate import Accelerator, PartialState  # noqa: E402
from accelerate.utils import DummyScheduler  # noqa: E402
from torch.optim.lr_scheduler import LambdaLR  # noqa: E402

from hf_timm_layerdecay import accelerate_optimizer, check_lr_ratios  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from deepspeed_train import (  # noqa: E402
    DECAY, LR, SMALL, STEPS, batches, checks, full_weights, groups_for, layer_of, model_to_train, moved_per_layer,
    schedule,
)

#: the sections' schedule: WarmupCosineLR warms up linearly from 0.5 to 1 over 2 steps, then
#: decays by a cosine to 0 at step 6 (DeepSpeed's own ratios, read in the test)
TOTAL, WARMUP = 2 * STEPS, 2


def scheduler_for(mode: str, optimizer):
    if mode == "sections":
        return DummyScheduler(optimizer, total_num_steps=TOTAL, warmup_num_steps=WARMUP)
    if mode == "callable":  # a torch schedule on the optimizer DeepSpeed builds
        return DummyScheduler(optimizer, lr_scheduler_callable=lambda built: LambdaLR(built, schedule))
    return LambdaLR(optimizer, schedule)


def prepared(accelerator: Accelerator, mode: str, decay: float):
    model = model_to_train()
    optimizer = accelerate_optimizer(accelerator, model, lr=LR, layer_decay=decay, weight_decay=0.0, lr_mult=SMALL)
    built = type(optimizer).__name__
    layers = layer_of(optimizer.params if built == "DummyOptim" else optimizer.param_groups)
    return (*accelerator.prepare(model, optimizer, scheduler_for(mode, optimizer)), built, layers)


def train(mode: str, out: Path) -> dict:
    accelerator = Accelerator()
    stage = accelerator.state.deepspeed_plugin.zero_stage
    model, optimizer, scheduler, built, layers = prepared(accelerator, mode, DECAY)
    record = {"rank": accelerator.process_index, "world_size": accelerator.num_processes, "stage": stage,
              "built": built, "optimizer": type(optimizer).__name__, "steps": []}
    for step, batch in enumerate(batches()):
        lrs = {g["name"]: g["lr"] for g in optimizer.param_groups}  # the lrs this step uses
        # the first step that moves (DeepSpeed's schedulers run the first at lr 0)
        measured = "moved" not in record and max(lrs.values()) > 0
        before = full_weights(model.module, stage) if measured else None
        loss = model(**batch).loss
        accelerator.backward(loss)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad()
        if measured:
            record["moved"] = moved_per_layer(before, full_weights(model.module, stage), layers)
            record["moved_at"] = step
        record["steps"].append({"lrs": lrs, "problems": check_lr_ratios(optimizer, warn=False)})
    record.update(checks(optimizer, model.module))
    accelerator.save_state(str(out / "state"))
    record["resume"] = resume(accelerator, mode, out / "state", 0.9)
    record["resume_same"] = resume(accelerator, mode, out / "state", DECAY)
    if accelerator.is_main_process:
        record["plain"] = plain_moves([s["lrs"] for s in record["steps"]], record["moved_at"])
    return record


def resume(accelerator: Accelerator, mode: str, state: Path, decay: float) -> str:
    """``load_state`` of that checkpoint into a new run with ``decay``: ``"loaded"`` or the error.
    (``free_memory`` drops the engine of the run before, so that the accelerator holds one, as in a
    new process.)"""
    accelerator.free_memory()
    prepared(accelerator, mode, decay)
    try:
        accelerator.load_state(str(state))
    except Exception as exc:  # noqa: BLE001 - recorded for the test to assert on
        return f"{type(exc).__name__}: {exc}"
    return "loaded"


def plain_moves(lrs: list[dict], upto: int) -> dict:
    """The same steps without accelerate or DeepSpeed, each group at the lr DeepSpeed's run used:
    how far each layer moved in step ``upto``."""
    model = model_to_train()
    groups = groups_for(model)
    layers = layer_of(groups)
    optimizer = torch.optim.AdamW(groups, lr=LR)
    for step, batch in enumerate(batches()[: upto + 1]):
        for group in optimizer.param_groups:
            group["lr"] = lrs[step][group["name"]]
        before = {n: p.detach().clone() for n, p in model.named_parameters()}
        model(**batch).loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    return moved_per_layer(before, {n: p.detach().clone() for n, p in model.named_parameters()}, layers)


def main(mode: str, out: Path) -> None:
    deepspeed.ops.__compatible_ops__["deepspeed_shm_comm"] = False  # no C++ build for the shared-memory comm
    # accelerate finds no distributed backend on a machine without GPUs and would count one process
    # (on GPUs it picks nccl itself)
    PartialState(backend="gloo")
    record = train(mode, out)
    (out / f"rank{record['rank']}.json").write_text(json.dumps(record))
    torch.distributed.barrier()  # both ranks done before either exits (see deepspeed_train.py)
    torch.distributed.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1], Path(sys.argv[2]))
