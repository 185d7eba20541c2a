"""Benchmark: the cost of layer-decay parameter groups in the optimizer step (AdamW).

Layer decay splits the parameters into up to 2 x (layers + 2) groups, and ``torch.optim`` runs
its multi-tensor kernels once per group (per device and dtype). This script compares, for
AdamW with ``foreach=True`` and with ``fused=True``:

- ``single``: one group holding every parameter (``AdamW(model.parameters())``);
- ``wd split``: the usual decay / no-decay pair (``auto_layer_decay(layer_decay=None)``);
- ``timm``: timm's ``param_groups_layer_decay`` groups;
- ``ours``: ``auto_layer_decay`` groups, and with ``min_scale`` clamping, where equal groups merge.

It prints:

1. **Op counts per step** (torch profiler, deterministic): the multi-tensor optimizer ops
   (``aten::_foreach_*`` / ``aten::_fused_*``; on a GPU each is one or more kernel launches), all
   top-level aten ops, and every aten op including the per-tensor ops of the CPU fallback. Counted
   on 1-element stand-ins of the model's parameters (the ops depend on the groups and the number
   of tensors, not on their sizes), so 1B and 7B shapes need no memory.
2. **Host time per step** on those stand-ins: Python and dispatcher work without the arithmetic.
   The difference between groupings is what more groups cost the CPU that feeds a GPU.
3. **A GPU launch model**: CUDA kernel launches and blocks per launch that these groups give,
   from ``multi_tensor_apply``'s chunking rules (torch 2.15 ``MultiTensorApply.cuh``), computed
   from the real tensor sizes. A model, not a measurement.
4. **Step time with real tensors** on this machine's device (CPU here; ``--device cuda`` on a GPU
   machine), every grouping alternating, median over steps and rounds.

    python benchmarks/optimizer_step.py            # full run (several minutes, ~10 GB RAM)
    python benchmarks/optimizer_step.py --quick    # smoke run, seconds
    python benchmarks/optimizer_step.py --device cuda --llama-layers 22 --only timing --no-wait   # the GPU figures

On a GPU the step takes milliseconds, not the CPU's hundreds, so ``--device cuda`` times
100 steps in each of 7 rounds by default (CPU: 5 x 3), enough for a 3% comparison, and checks
the GPU's free memory, not the host's, before each model. ``--no-wait`` skips waiting for a
quiet 1-minute load average, which a freshly started GPU machine need not reach in time.
"""

from __future__ import annotations

import argparse
import gc
import statistics
import sys
import time
from collections import Counter
from typing import Callable, Optional

import torch
from torch import nn

import _common as c

LR, WEIGHT_DECAY, LAYER_DECAY = 1e-3, 0.05, 0.75
IMPLEMENTATIONS = ("foreach", "fused")


# ---------------------------------------------------------------- groupings


def groupings(model: nn.Module, with_merge: bool = True) -> dict[str, list[dict]]:
    """The groupings compared, each a list of torch.optim groups over the model's parameters."""
    from timm.optim import param_groups_layer_decay

    from hf_timm_layerdecay import auto_layer_decay

    trainable = [p for p in model.parameters() if p.requires_grad]
    found = {
        "single": [{"params": trainable}],
        "wd split": auto_layer_decay(model, lr=LR, layer_decay=None, weight_decay=WEIGHT_DECAY),
        "timm": param_groups_layer_decay(model, weight_decay=WEIGHT_DECAY, layer_decay=LAYER_DECAY),
        "ours": auto_layer_decay(model, lr=LR, layer_decay=LAYER_DECAY, weight_decay=WEIGHT_DECAY),
    }
    if with_merge:
        found["ours, min_scale=0.1"] = auto_layer_decay(model, lr=LR, layer_decay=0.65, weight_decay=WEIGHT_DECAY, min_scale=0.1)
    return found


def optimizer_groups(groups: list[dict], swap: Optional[dict[int, torch.Tensor]] = None) -> list[dict]:
    """Copies of ``groups`` with only what torch.optim reads (params swapped when asked)."""
    out = []
    for group in groups:
        params = [swap[id(p)] for p in group["params"]] if swap is not None else list(group["params"])
        copy = {"params": params}
        for key in ("lr", "weight_decay"):
            if key in group:
                copy[key] = group[key]
        out.append(copy)
    return out


def make_optimizer(groups: list[dict], implementation: str) -> torch.optim.Optimizer:
    flags = {"foreach": dict(foreach=True), "fused": dict(fused=True)}[implementation]
    return torch.optim.AdamW(groups, lr=LR, weight_decay=WEIGHT_DECAY, **flags)


def stand_ins(model: nn.Module, device: str = "cpu") -> dict[int, torch.Tensor]:
    """A 1-element parameter (with a gradient) for every parameter of ``model``, by id."""
    swap = {}
    for p in model.parameters():
        q = nn.Parameter(torch.zeros(1, device=device))
        q.grad = torch.zeros(1, device=device)
        swap[id(p)] = q
    return swap


# ---------------------------------------------------------------- op counts


def op_counts(optimizer: torch.optim.Optimizer) -> dict[str, object]:
    """Aten ops of one step (after a first step that creates the state)."""
    from torch.profiler import ProfilerActivity, profile

    optimizer.step()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        optimizer.step()
    top: Counter = Counter()
    total = 0
    for event in prof.events():
        if not event.name.startswith("aten::"):
            continue
        total += 1
        parent = event.cpu_parent
        while parent is not None and not parent.name.startswith("aten::"):
            parent = parent.cpu_parent
        if parent is None:
            top[event.name] += 1
    multi = {name: n for name, n in top.items() if "_foreach_" in name or "_fused_" in name}
    return {"multi": sum(multi.values()), "top": sum(top.values()), "total": total, "by_name": multi}


def host_times(optimizers: dict[str, torch.optim.Optimizer], steps: int) -> dict[str, list[float]]:
    for optimizer in optimizers.values():
        optimizer.step()
    return c.side_by_side({name: opt.step for name, opt in optimizers.items()}, steps, warmup=2)


# ---------------------------------------------------------------- GPU launch model

#: (max tensors, max blocks) per launch by depth, from MultiTensorApply.cuh (torch 2.15): the
#: 4 KB kernel-argument layout (CUDA < 13) and the 32 KB one (CUDA >= 13).
_LIMITS = {
    "cuda<13": {"tensors": (110, 64, 48, 36, 30), "scalarlist": (96, 64, 48, 36, 30), "blocks": 320},
    "cuda>=13": {"tensors": (770, 448, 336, 252, 210), "scalarlist": (672, 448, 336, 252, 210), "blocks": 2240},
}
_CHUNK = 65536
#: The device kernels AdamW issues per group and device/dtype (torch 2.15 torch/optim/adam.py,
#: non-capturable, no amsgrad): (op, depth, takes a scalar list). The step counters of the
#: foreach path live on the CPU (no kernel); the fused path keeps them on the device.
_FOREACH_OPS = [
    ("mul_ (weight decay)", 1, False), ("lerp_", 2, False), ("mul_", 1, False), ("addcmul_", 3, False),
    ("sqrt", 2, False), ("div_", 1, True), ("add_", 1, False), ("addcdiv_", 3, True),
]
_FUSED_OPS = [("add_ (step)", 1, False), ("_fused_adamw_", 4, False)]


def mta_launches(numels: list[int], max_tensors: int, max_blocks: int) -> tuple[int, int]:
    """(launches, blocks) of one multi_tensor_apply call, following its loop exactly."""
    launches = blocks = 0
    tensors_in = blocks_in = 0
    for numel in numels:
        if numel == 0:
            continue
        tensors_in += 1
        chunks = -(-numel // _CHUNK)
        for chunk in range(chunks):
            blocks_in += 1
            blocks += 1
            if (tensors_in == max_tensors and chunk == chunks - 1) or blocks_in == max_blocks:
                launches += 1
                blocks_in = 0
                tensors_in = 0 if chunk == chunks - 1 else 1
    if blocks_in:
        launches += 1
    return launches, blocks


def launch_model(groups: list[dict], implementation: str, limits: str) -> tuple[int, float]:
    """(kernel launches per step, mean blocks per launch) for these groups."""
    rule = _LIMITS[limits]
    launches = blocks = 0
    for group in groups:
        numels = [p.numel() for p in group["params"]]
        wd = group.get("weight_decay", WEIGHT_DECAY)
        ops = _FOREACH_OPS if implementation == "foreach" else _FUSED_OPS
        for name, depth, scalarlist in ops:
            if name.startswith("mul_ (weight") and not wd:
                continue
            sizes = [1] * len(numels) if "step" in name else numels
            max_t = (rule["scalarlist"] if scalarlist else rule["tensors"])[depth - 1]
            n, b = mta_launches(sizes, max_t, rule["blocks"])
            launches += n
            blocks += b
    return launches, blocks / max(launches, 1)


# ---------------------------------------------------------------- real step time


def bytes_of_state(optimizer: torch.optim.Optimizer) -> int:
    return sum(t.numel() * t.element_size() for s in optimizer.state.values() for t in s.values() if torch.is_tensor(t))


def synchronize(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize(device)


def real_step_times(
    model: nn.Module, found: dict[str, list[dict]], implementation: str, device: str, steps: int, rounds: int
) -> dict[str, dict[str, float]]:
    """Median step time per grouping: ``rounds`` rounds, each building every optimizer in turn
    (one at a time: the states of a large model do not fit several times) and timing ``steps``
    steps after a first one; per-round ratios to ``single`` are taken side by side."""
    per_round: dict[str, list[float]] = {name: [] for name in found}
    state_bytes: dict[str, int] = {}
    for _ in range(rounds):
        for name, groups in found.items():
            optimizer = make_optimizer(optimizer_groups(groups), implementation)
            optimizer.step()
            synchronize(device)
            state_bytes[name] = bytes_of_state(optimizer)
            times = []
            for _ in range(steps):
                start = time.perf_counter()
                optimizer.step()
                synchronize(device)
                times.append(time.perf_counter() - start)
            per_round[name].append(statistics.median(times))
            del optimizer
            gc.collect()
    result = {}
    for name, values in per_round.items():
        result[name] = {
            "median": statistics.median(values),
            "ratio": statistics.median(a / b for a, b in zip(values, per_round["single"])),
            "state_bytes": state_bytes[name],
        }
    return result


def add_gradients(model: nn.Module) -> None:
    generator = torch.Generator(device="cpu").manual_seed(0)
    for p in model.parameters():
        p.grad = (torch.randn(p.shape, generator=generator) * 1e-3).to(p.device)


def needed_bytes(model_elements: int, implementation: str) -> int:
    """Parameters, gradients, two AdamW states, and foreach's square-root temporary."""
    return model_elements * 4 * (5 if implementation == "foreach" else 4)


def available_bytes(device: str = "cpu") -> Optional[int]:
    """Free memory where the step runs: the GPU's for ``cuda``, else the host's (None: unknown)."""
    if device.startswith("cuda"):
        free, _total = torch.cuda.mem_get_info(torch.device(device))
        return free
    try:
        import psutil

        return psutil.virtual_memory().available
    except ImportError:
        return None


# ---------------------------------------------------------------- main


SHAPES: dict[str, Callable[[], nn.Module]] = {
    "ViT-B/16": lambda: c.timm_model("vit_base_patch16_224"),
    "Llama 1B-shaped (22 layers)": lambda: c.llama("1b"),
    "Llama 7B-shaped": lambda: c.llama("7b"),
}
QUICK_SHAPES = {"ViT-S/16": lambda: c.timm_model("vit_small_patch16_224")}


def counts_section(shapes: dict[str, Callable[[], nn.Module]], host_steps: int, load) -> None:
    c.section("1-3. Per step: optimizer ops (profiler), host time on 1-element stand-ins (CPU), GPU launch model")
    rows = []
    for label, build in shapes.items():
        model = build()
        found = groupings(model)
        swap = stand_ins(model)
        for implementation in IMPLEMENTATIONS:
            optimizers = {name: make_optimizer(optimizer_groups(g, swap), implementation) for name, g in found.items()}
            counts = {name: op_counts(opt) for name, opt in optimizers.items()}
            c.wait_for_quiet(load)
            times = host_times(optimizers, host_steps)
            for name, groups in found.items():
                launches_old, blocks_old = launch_model(groups, implementation, "cuda<13")
                launches_new, blocks_new = launch_model(groups, implementation, "cuda>=13")
                extra = c.median(times[name]) - c.median(times["single"])
                rows.append([
                    label, implementation, name, len(groups), counts[name]["multi"], counts[name]["top"], counts[name]["total"],
                    f"{c.median(times[name]) * 1e3:.2f}", f"{extra * 1e3:+.2f}",
                    f"{launches_old} / {blocks_old:.0f}", f"{launches_new} / {blocks_new:.0f}",
                ])
            print(f"#   {label} {implementation}: done (load {c.load_now():.2f})", file=sys.stderr, flush=True)
            del optimizers
        del model, swap
        gc.collect()
    print(c.table(
        ["model", "AdamW", "groups from", "groups", "multi-tensor ops", "top-level aten ops", "all aten ops",
         "host ms", "host ms vs single", "GPU launches / blocks per launch (CUDA<13)", "(CUDA>=13)"],
        rows, align="lllrrrrrrrr",
    ))
    print(
        f"\nOps: one profiled step after a first one. Host ms: median of {host_steps} steps on 1-element CPU stand-ins "
        "(the ops and Python work of the step without the arithmetic), groupings alternating. GPU launches: "
        "multi_tensor_apply's chunking (65,536 elements per block; at most 320 blocks / 36-110 tensors per launch "
        "with CUDA < 13, 2,240 blocks / 210-770 tensors with CUDA >= 13) applied to the real tensor sizes; "
        "an H100 runs about 528 such 512-thread blocks at once."
    )


def timing_section(shapes: dict[str, Callable[[], nn.Module]], device: str, steps: int, rounds: int, load) -> None:
    c.section(f"4. Step time with real tensors on {device} (median over {rounds} rounds x {steps} steps)")
    rows = []
    for label, build in shapes.items():
        model = build()
        tensors, elements = c.parameter_count(model)
        add_gradients(model)
        found = groupings(model, with_merge=True)
        for implementation in IMPLEMENTATIONS:
            need, have = needed_bytes(elements, implementation), available_bytes(device)
            if have is not None and need > 0.8 * have:
                rows.append([label, implementation, "skipped", "", "", f"needs {need / 2**30:.1f} GiB, {have / 2**30:.1f} available", ""])
                continue
            c.wait_for_quiet(load)
            result = real_step_times(model, found, implementation, device, steps, rounds)
            for name, r in result.items():
                rows.append([
                    f"{label} ({c.fmt_count(elements)}, {tensors} tensors)", implementation, name, len(found[name]),
                    f"{r['median'] * 1e3:,.1f}", f"{r['ratio']:.3f}", f"{r['state_bytes'] / 2**20:,.0f}",
                ])
            print(f"#   {label} {implementation}: done (load {c.load_now():.2f})", file=sys.stderr, flush=True)
        del model, found
        gc.collect()
    print(c.table(["model", "AdamW", "groups from", "groups", "step ms", "vs single (same round)", "optimizer state MiB"], rows, align="lllrrrr"))
    print(
        "\nEvery grouping is built and timed in turn within a round (one optimizer in memory at a time); "
        "'vs single' is the median over rounds of the ratio to the single group of the same round."
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog=__doc__.split("\n\n", 1)[1])
    c.add_common_arguments(parser)
    parser.add_argument("--device", default="cpu", help="device of the real-tensor step timing: cpu (default) or cuda")
    parser.add_argument("--llama-layers", type=int, default=8,
                        help="depth of the 1B-shaped Llama (TinyLlama widths) timed with real tensors (default 8: "
                             "~0.48B parameters, ~10 GB with AdamW; 22 is the full 1.1B)")
    parser.add_argument("--steps", type=int, default=None, help="timed steps per optimizer and round (default 5 on cpu, 100 on cuda)")
    parser.add_argument("--rounds", type=int, default=None, help="rounds over the groupings (default 3 on cpu, 7 on cuda)")
    parser.add_argument("--only", choices=["counts", "timing"], nargs="+", help="run only these sections")
    args = parser.parse_args(argv)
    c.quiet_libraries()
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA device here")
    load = c.max_load(args)
    sections = set(args.only or ["counts", "timing"])

    print("## The optimizer step\n")
    print("\n".join(f"- {line}" for line in c.machine_lines(args.device) + [c.python_path_note()]))
    if "counts" in sections:
        counts_section(QUICK_SHAPES if args.quick else SHAPES, args.repeats or (5 if args.quick else 50), load)
    if "timing" in sections:
        if args.quick:
            real = {"ViT-S/16": lambda: c.timm_model("vit_small_patch16_224", args.device)}
        else:
            real = {
                "ViT-B/16": lambda: c.timm_model("vit_base_patch16_224", args.device),
                f"Llama 1B-shaped, {args.llama_layers} layers": lambda: c.llama("1b", args.device, args.llama_layers),
            }
        steps, rounds = (2, 1) if args.quick else (100, 7) if args.device.startswith("cuda") else (5, 3)
        timing_section(real, args.device, args.steps or steps, args.rounds or rounds, load)
    return 0


if __name__ == "__main__":
    sys.exit(main())
