"""Run under ``torchrun --nproc_per_node 2``: train a few steps with layer decay, then let every
rank write what its optimizer holds to ``OUT/rank<r>.json``.

Modes:
  trainer-ddp    LayerDecayTrainer under DistributedDataParallel (gloo, CPU)
  fsdp2          FSDP2: fully_shard each BertLayer and the model, then create_optimizer
  fsdp1          FSDP1 (use_orig_params=True) wrapping each BertLayer, then create_optimizer
  ep-tp          a Qwen3-MoE checkpoint (OUT/checkpoint) loaded by transformers with expert and tensor
                 parallelism (attention on the `tp` mesh, experts on `ep`, router and norms plain),
                 then create_optimizer with fused AdamW; also writes how far each tensor moved in
                 the first step

accelerate enables its FSDP path (Trainer(fsdp=...)) on accelerators only; on CPU the Trainer
runs DDP instead, so the Trainer's FSDP path is not exercised here.
"""

from __future__ import annotations

import json
import os
import sys

import torch
import torch.distributed as dist

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from hf_timm_layerdecay import LayerDecayTrainer, create_optimizer  # noqa: E402
from trainer_setup import ToyDataset, tiny_bert, training_args  # noqa: E402


def describe(optimizer, losses):
    groups = [
        {"name": g.get("name"), "layer_id": g.get("layer_id"), "lr": g["lr"], "initial_lr": g.get("initial_lr"),
         "weight_decay": g["weight_decay"], "param_names": g.get("param_names"),
         "param_types": sorted({type(p).__name__ for p in g["params"]})}
        for g in optimizer.param_groups
    ]
    return {"world_size": dist.get_world_size(), "groups": groups, "losses": losses}


def run_trainer(out):
    trainer = LayerDecayTrainer(
        model=tiny_bert(), train_dataset=ToyDataset(),
        args=training_args(out, max_steps=3, ddp_backend="gloo", lr_scheduler_type="linear", weight_decay=0.01),
    )
    trainer.train()
    losses = [e["loss"] for e in trainer.state.log_history if "loss" in e]
    return describe(trainer.optimizer, losses)


def shard(model, mode):
    from transformers.models.bert.modeling_bert import BertLayer

    dist.init_process_group("gloo")
    if mode == "fsdp2":
        from torch.distributed.device_mesh import init_device_mesh
        from torch.distributed.fsdp import fully_shard

        mesh = init_device_mesh("cpu", (dist.get_world_size(),))
        for layer in model.bert.encoder.layer:
            fully_shard(layer, mesh=mesh)
        return fully_shard(model, mesh=mesh)
    from torch.distributed.fsdp import FullyShardedDataParallel
    from torch.distributed.fsdp.wrap import ModuleWrapPolicy

    return FullyShardedDataParallel(
        model, auto_wrap_policy=ModuleWrapPolicy({BertLayer}), use_orig_params=True, device_id=torch.device("cpu")
    )


def run_sharded(mode):
    model = shard(tiny_bert(), mode)
    optimizer = create_optimizer(model, "adamw", lr=1e-3, layer_decay=0.5, weight_decay=0.01)
    data = ToyDataset()
    losses = []
    for step in range(3):
        batch = data[step * 4 : step * 4 + 4]
        loss = model(**batch).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        losses.append(loss.item())
    return describe(optimizer, losses)


def run_expert_and_tensor_parallel(out):
    from transformers import AutoModelForCausalLM
    from transformers.distributed import DistributedConfig

    model = AutoModelForCausalLM.from_pretrained(
        os.path.join(out, "checkpoint"), distributed_config=DistributedConfig(ep_size=2, tp_size=2)
    )
    optimizer = create_optimizer(model, "adamw", lr=1e-3, layer_decay=0.5, weight_decay=0.01, fused=True)
    data = ToyDataset()
    losses, moved = [], {}
    before = {name: local(param).clone() for name, param in model.named_parameters()}
    for step in range(3):
        input_ids = data[step * 4 : step * 4 + 4]["input_ids"]
        loss = model(input_ids=input_ids, labels=input_ids).loss
        loss.backward()
        optimizer.step()  # fused AdamW: one kernel per group, which refuses mixed DTensor / Tensor groups
        optimizer.zero_grad()
        losses.append(loss.item())
        if step == 0:
            moved = {name: (local(param) - before[name]).abs().max().item() for name, param in model.named_parameters()}
    result = describe(optimizer, losses)
    for described, group in zip(result["groups"], optimizer.param_groups):
        described["meshes"] = sorted({mesh_name(p) for p in group["params"]})
    result["moved_in_first_step"] = moved
    return result


def local(param):
    return param.to_local() if hasattr(param, "to_local") else param.detach()


def mesh_name(param):
    mesh = getattr(param, "device_mesh", None)
    return "plain" if mesh is None else ",".join(mesh.mesh_dim_names)


def main():
    mode, out = sys.argv[1], sys.argv[2]
    if mode == "trainer-ddp":
        result = run_trainer(out)
    elif mode == "ep-tp":
        result = run_expert_and_tensor_parallel(out)
    else:
        result = run_sharded(mode)
    with open(os.path.join(out, f"rank{dist.get_rank()}.json"), "w") as handle:
        json.dump(result, handle)
    dist.barrier()
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
