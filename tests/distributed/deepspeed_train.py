"""ZeRO stages 1, 2 and 3 on layer-decayed groups, for real: run by
``torchrun --nproc_per_node 2`` on CPUs (DeepSpeed's CPU accelerator, gloo).

For each stage: a tiny BERT from its config, groups from ``auto_layer_decay`` (one of them of a
single element, fewer than the ranks), a client AdamW and a step-wise torch
schedule handed to ``deepspeed.initialize``; three steps. Rank 0 also trains the same model
without DeepSpeed. Writes ``rank<r>.json``: per stage and step the lr of every group by name,
what ``check_param_groups`` / ``layer_decay_report`` / ``check_lr_ratios`` make of the engine's
optimizer, how far each layer moved in the first step, and what loading the stage's checkpoint
into an engine whose optimizer has another ``layer_decay`` does.
"""

import json
import os
import sys
from pathlib import Path

os.environ.setdefault("DS_ACCELERATOR", "cpu")

import deepspeed  # noqa: E402
import deepspeed.ops  # noqa: E402
import torch  # noqa: E402
import torch.distributed as dist  # noqa: E402

from hf_timm_layerdecay import (  # noqa: E402
    auto_layer_decay, check_lr_ratios, check_param_groups, create_optimizer, layer_decay_report,
)

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/ helpers
from trainer_setup import ToyDataset, tiny_bert  # noqa: E402

LR, DECAY, STEPS = 1e-3, 0.5, 3
#: an lr multiplier on the one-element bias of a one-output head: a group smaller than the world
SMALL = {"classifier.bias": 2.0}


def model_to_train() -> torch.nn.Module:
    """The tiny BERT of the other tests, with a one-output regression head."""
    model = tiny_bert(layers=2)
    torch.manual_seed(1)
    model.classifier = torch.nn.Linear(model.config.hidden_size, 1)
    model.num_labels = model.config.num_labels = 1
    return model


def groups_for(model: torch.nn.Module) -> list[dict]:
    return auto_layer_decay(model, lr=LR, layer_decay=DECAY, weight_decay=0.0, lr_mult=SMALL)


def schedule(step: int) -> float:
    return 1.0 - step / (2 * STEPS)


def batches() -> list[dict]:
    data = ToyDataset(size=4 * STEPS)
    return [{"input_ids": torch.stack([data[i]["input_ids"] for i in range(4 * s, 4 * s + 4)]),
             "labels": torch.stack([data[i]["labels"] for i in range(4 * s, 4 * s + 4)]).float()}
            for s in range(STEPS)]


def layer_of(groups: list[dict]) -> dict[str, int]:
    return {name: g["layer_id"] for g in groups if g.get("layer_id") is not None for name in g["param_names"]}


def moved_per_layer(before: dict, after: dict, layers: dict[str, int]) -> dict[int, float]:
    moved: dict[int, float] = {}
    for name, value in after.items():
        moved[layers[name]] = max(moved.get(layers[name], 0.0), (value - before[name]).abs().max().item())
    return moved


def full_weights(model: torch.nn.Module, stage: int) -> dict[str, torch.Tensor]:
    params = list(model.named_parameters())
    if stage == 3:  # partitioned: gather each parameter for the copy
        with deepspeed.zero.GatheredParameters([p for _, p in params]):
            return {name: p.detach().clone() for name, p in params}
    return {name: p.detach().clone() for name, p in params}


def run_stage(stage: int, out: Path) -> dict:
    model = model_to_train()
    groups = groups_for(model)
    layers = layer_of(groups)
    optimizer = torch.optim.AdamW(groups, lr=LR)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
    config = {"train_micro_batch_size_per_gpu": 4, "zero_optimization": {"stage": stage},
              "zero_allow_untested_optimizer": True, "gradient_clipping": 0.0}
    engine, ds_optimizer, _, ds_scheduler = deepspeed.initialize(
        model=model, optimizer=optimizer, lr_scheduler=scheduler, config=config)
    record = {"steps": [], "optimizer": type(ds_optimizer).__name__}
    for step, batch in enumerate(batches()):
        before = full_weights(engine.module, stage) if step == 0 else None
        lrs = {g.get("name", "?"): g["lr"] for g in ds_optimizer.param_groups}
        loss = engine(**batch).loss
        engine.backward(loss)
        engine.step()  # also steps the scheduler
        if step == 0:
            record["moved"] = moved_per_layer(before, full_weights(engine.module, stage), layers)
        record["steps"].append({"lrs": lrs, "problems": check_lr_ratios(ds_optimizer, warn=False)})
    record.update(checks(ds_optimizer, engine.module))
    record["group_names"] = [g.get("name") for g in ds_optimizer.param_groups]
    engine.save_checkpoint(str(out / f"zero{stage}"))
    record["resume"] = resume(stage, config, out / f"zero{stage}")
    return record


def checks(optimizer, model: torch.nn.Module) -> dict:
    """What ``check_param_groups`` (``"ok"`` or the error) and ``layer_decay_report`` (tensors and
    elements per group, coverage) make of a DeepSpeed optimizer and its model."""
    try:
        check_param_groups(optimizer, model)
        check = "ok"
    except Exception as exc:  # noqa: BLE001 - recorded for the test to assert on
        check = f"{type(exc).__name__}: {exc}"
    report = layer_decay_report(optimizer, model)
    return {"check": check, "report": {row.name: [row.tensors, row.elements] for row in report.rows},
            "coverage_ok": report.coverage.ok}


def resume(stage: int, config: dict, checkpoint: Path) -> str:
    """DeepSpeed's ``load_checkpoint`` of that stage's checkpoint into an engine whose client
    optimizer, from ``create_optimizer``, has layer_decay 0.9: the error, or ``"loaded"``."""
    model = model_to_train()
    optimizer = create_optimizer(model, "adamw", lr=LR, layer_decay=0.9, weight_decay=0.0, lr_mult=SMALL)
    engine, *_ = deepspeed.initialize(model=model, optimizer=optimizer, config=config)
    try:
        engine.load_checkpoint(str(checkpoint))
    except Exception as exc:  # noqa: BLE001 - recorded for the test to assert on
        return f"{type(exc).__name__}: {exc}"
    return "loaded"


def frozen_only_group(stage: int) -> str:
    """What DeepSpeed does with a group whose parameters are all frozen (``frozen="include"``
    with a block frozen whole): the error, or ``"ok"``."""
    model = model_to_train()
    for param in model.bert.encoder.layer[0].parameters():
        param.requires_grad_(False)
    optimizer = torch.optim.AdamW(auto_layer_decay(model, lr=LR, layer_decay=DECAY, frozen="include"), lr=LR)
    config = {"train_micro_batch_size_per_gpu": 4, "zero_optimization": {"stage": stage}}
    try:
        deepspeed.initialize(model=model, optimizer=optimizer, config={**config, "zero_allow_untested_optimizer": True})
    except Exception as exc:  # noqa: BLE001 - recorded for the test to assert on
        return type(exc).__name__
    return "ok"


def run_plain() -> dict:
    model = model_to_train()
    groups = groups_for(model)
    layers = layer_of(groups)
    optimizer = torch.optim.AdamW(groups, lr=LR)
    batch = batches()[0]
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    model(**batch).loss.backward()
    optimizer.step()
    return moved_per_layer(before, {n: p.detach().clone() for n, p in model.named_parameters()}, layers)


def main(out: Path) -> None:
    deepspeed.ops.__compatible_ops__["deepspeed_shm_comm"] = False  # no C++ build for the shared-memory comm
    deepspeed.init_distributed(dist_backend="gloo")
    rank = dist.get_rank()
    record = {"rank": rank, "world_size": dist.get_world_size(), "deepspeed": deepspeed.__version__,
              "stages": {stage: run_stage(stage, out) for stage in (1, 2, 3)},
              "frozen_only_group": {stage: frozen_only_group(stage) for stage in (2, 3)}}
    if rank == 0:
        record["plain"] = run_plain()
    (out / f"rank{rank}.json").write_text(json.dumps(record))
    # both ranks done with every collective before either exits: a rank leaving while gloo's threads
    # still serve the other aborts it ("terminate called without an active exception")
    dist.barrier()
    dist.destroy_process_group()


if __name__ == "__main__":
    main(Path(sys.argv[1]))
