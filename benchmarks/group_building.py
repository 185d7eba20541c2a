"""Benchmark: the cost of building layer-decay parameter groups, against timm.

Times ``auto_layer_decay`` (default strategy) and timm's ``param_groups_layer_decay`` on the same
models, side by side in one run, and prints Markdown tables:

1. **Models** built without weights on the meta device: ViT-S/B/L, ConvNeXt-B (timm), a
   7B-shaped Llama, mixture-of-experts models (Qwen3-MoE with 128 fused experts, Switch-Base-128
   with one module per expert, DeepSeek-V3 671B-shaped) from transformers. timm's function is
   called as timm's optimizer factory (``create_optimizer_v2(model, layer_decay=...)``) calls it,
   with the model's ``no_weight_decay()`` names: the exclusions ``auto_layer_decay`` applies by
   default, so both do the same job. Each pair is timed twice: with a full garbage collection
   before every call (cold caches, as a training script's one call meets them) and back to back.
   timm has no rule for transformers models: its function falls back to chunks of 12 tensors
   there (and logs that layer decay has no effect); it is timed anyway, on the same module.
2. **Scaling** with the number of parameter tensors, up to 100,000, on synthetic module trees
   (``deep``: ever more small blocks; ``wide``: 32 layers of ever more experts), with the growth
   exponent (slope of log time against log tensors; 1.0 is linear).
3. **Merging** of groups whose hyperparameters are equal (``min_scale`` clamping, repeated
   per-layer values, no weight decay): groups before and after, and timm's count.
4. **Memory** on a model with real CPU tensors: bytes torch allocates during the call (profiler),
   the peak of Python's heap (tracemalloc), and whether the groups hold the model's own parameter
   objects and storage (no copies).

"walks" counts how often one call walks the whole module tree (``named_parameters()`` /
``named_modules()`` on the model, or this library's own walk): deterministic.

    python benchmarks/group_building.py            # full run (a few minutes), waits for a quiet machine
    python benchmarks/group_building.py --quick    # smoke run, seconds
    python benchmarks/group_building.py --profile  # cProfile of the largest cases as well
"""

from __future__ import annotations

import argparse
import cProfile
import contextlib
import io
import pstats
import sys
from typing import Callable, Iterator

import torch
from torch import nn

import _common as c

MODELS: dict[str, Callable[[], nn.Module]] = {
    "ViT-S/16 (timm)": lambda: c.timm_model("vit_small_patch16_224"),
    "ViT-B/16 (timm)": lambda: c.timm_model("vit_base_patch16_224"),
    "ViT-L/16 (timm)": lambda: c.timm_model("vit_large_patch16_224"),
    "ConvNeXt-B (timm)": lambda: c.timm_model("convnext_base"),
    "Llama 7B-shaped (transformers)": lambda: c.llama("7b"),
    "Qwen3-MoE 48 layers x 128 experts, fused (transformers)": lambda: c.transformers_model("qwen3_moe", num_hidden_layers=48),
    "Switch-Base-128, one module per expert (transformers)": lambda: c.transformers_model("switch_transformers", num_experts=128),
    "DeepSeek-V3 671B-shaped, 256 experts (transformers)": lambda: c.transformers_model("deepseek_v3"),
}
QUICK_MODELS = ("ViT-S/16 (timm)", "Llama 7B-shaped (transformers)")
SIZES = (1_000, 3_000, 10_000, 30_000, 100_000)
QUICK_SIZES = (300, 1_000, 3_000)


def ours(model: nn.Module, **options) -> list[dict]:
    from hf_timm_layerdecay import auto_layer_decay

    return auto_layer_decay(model, lr=1e-3, layer_decay=options.pop("layer_decay", 0.75), **options)


def timms(model: nn.Module, **options) -> list[dict]:
    """timm's groups as ``timm.optim.create_optimizer_v2`` builds them: with the model's own
    ``no_weight_decay()`` names (timm models list their position embeddings and tokens there)."""
    from timm.optim import param_groups_layer_decay

    no_weight_decay = getattr(model, "no_weight_decay", lambda: set())()
    return param_groups_layer_decay(
        model, layer_decay=options.pop("layer_decay", 0.75), no_weight_decay_list=no_weight_decay, **options
    )


@contextlib.contextmanager
def count_walks(model: nn.Module) -> Iterator[list[int]]:
    """Count the walks of ``model``'s whole module tree: every ``named_parameters()``,
    ``parameters()`` and direct ``named_modules()`` call on it (each runs one ``named_modules()``),
    and every walk of this library's own (``adapters/walk.py``, which does not go through them)."""
    from hf_timm_layerdecay.adapters import walk as walk_module

    counter = [0]
    original = nn.Module.named_modules
    original_walk = walk_module._walk

    def counting(self, memo=None, prefix="", remove_duplicate=True):
        if self is model and memo is None:
            counter[0] += 1
        return original(self, memo, prefix, remove_duplicate)

    def counting_walk(module):
        if module is model:
            counter[0] += 1
        return original_walk(module)

    nn.Module.named_modules = counting
    walk_module._walk = counting_walk
    try:
        yield counter
    finally:
        nn.Module.named_modules = original
        walk_module._walk = original_walk


def walks_per_call(model: nn.Module, build: Callable[[nn.Module], object]) -> int:
    with count_walks(model) as counter:
        build(model)
    return counter[0]


def model_table(names: list[str], repeats: int, load: float | None) -> None:
    c.section("1. Building groups: auto_layer_decay vs timm param_groups_layer_decay (meta-device models)")
    rows = []
    for label in names:
        model = MODELS[label]()
        tensors, elements = c.parameter_count(model)
        c.wait_for_quiet(load)
        pair = {"ours": lambda m=model: ours(m), "timm": lambda m=model: timms(m)}
        times = c.side_by_side(pair, repeats)
        back_to_back = c.side_by_side(pair, repeats, collect=False)
        ours_groups, timm_groups = ours(model), timms(model)
        layers = len({g["layer_id"] for g in ours_groups})
        rows.append([
            label, tensors, c.fmt_count(elements), c.fmt_ms(c.median(times["ours"])), c.fmt_ms(c.median(times["timm"])),
            f"{c.paired_ratio(times['ours'], times['timm']):.2f}",
            f"{c.paired_ratio(back_to_back['ours'], back_to_back['timm']):.2f}",
            walks_per_call(model, ours), walks_per_call(model, timms), f"{len(ours_groups)} ({layers} ids)", len(timm_groups),
        ])
        print(f"#   {label}: done (load {c.load_now():.2f})", file=sys.stderr, flush=True)
        del model
    print(c.table(
        ["model", "tensors", "params", "ours ms", "timm ms", "ours / timm", "back to back", "walks ours", "walks timm",
         "groups ours", "groups timm"],
        rows,
    ))
    print(
        f"\nmedian of {repeats} runs each, ours and timm alternating, a full garbage collection before every call; "
        "'ours / timm' is the median of the run-by-run ratios; 'back to back': the same ratio without the collections "
        f"(another {repeats} runs each). timm: param_groups_layer_decay as create_optimizer_v2 calls it."
    )


def scaling_table(sizes: tuple[int, ...], repeats: int, load: float | None) -> None:
    c.section("2. Scaling with the number of parameter tensors (synthetic meta-device trees, default strategy)")
    rows, fits = [], []
    for kind in ("deep", "wide"):
        measured_n, measured_ours, measured_timm = [], [], []
        for size in sizes:
            model = c.synthetic(kind, size)
            tensors, _ = c.parameter_count(model)
            runs = max(1, repeats if tensors <= 10_000 else repeats // 2 + 1)
            c.wait_for_quiet(load)
            times = c.side_by_side({"ours": lambda m=model: ours(m), "timm": lambda m=model: timms(m)}, runs)
            t_ours, t_timm = c.median(times["ours"]), c.median(times["timm"])
            groups = ours(model)
            rows.append([
                kind, f"{tensors:,}", c.fmt_ms(t_ours), c.fmt_ms(t_timm), f"{c.paired_ratio(times['ours'], times['timm']):.2f}",
                f"{t_ours / tensors * 1e6:.1f}", len(groups), runs,
            ])
            measured_n.append(tensors)
            measured_ours.append(t_ours)
            measured_timm.append(t_timm)
            print(f"#   {kind} {tensors}: done (load {c.load_now():.2f})", file=sys.stderr, flush=True)
            del model, groups
        fits.append(
            f"- {kind}: growth exponent ours {c.growth_exponent(measured_n, measured_ours):.2f}, "
            f"timm {c.growth_exponent(measured_n, measured_timm):.2f} "
            f"(least-squares slope of log time vs log tensors over {measured_n[0]:,}-{measured_n[-1]:,}; 1.00 = linear)"
        )
    print(c.table(["tree", "tensors", "ours ms", "timm ms", "ours / timm", "ours us/tensor", "groups ours", "runs"], rows))
    print("\n`deep`: stem, 4 stages of blocks (norm + 2 linear), head: one layer per block, so the groups grow too.")
    print("`wide`: 32 mixture-of-experts layers (norm, router, experts of 3 linear each): fixed 34 layer ids.\n")
    print("\n".join(fits))


@contextlib.contextmanager
def record_merges() -> Iterator[list[tuple[int, int]]]:
    """Record (groups in, groups out) of every ``merge_equal_groups`` call auto_layer_decay makes."""
    from hf_timm_layerdecay import api

    seen: list[tuple[int, int]] = []
    original = api.merge_equal_groups

    def recording(groups):
        merged = original(groups)
        seen.append((len(groups), len(merged)))
        return merged

    api.merge_equal_groups = recording
    try:
        yield seen
    finally:
        api.merge_equal_groups = original


def merge_table(model_name: str) -> None:
    c.section(f"3. Merging groups with equal hyperparameters ({model_name}, meta device)")
    model = MODELS[model_name]()
    cases = [
        ("layer_decay=0.75", dict(layer_decay=0.75), dict(layer_decay=0.75)),
        ("layer_decay=0.65, min_scale=0.1", dict(layer_decay=0.65, min_scale=0.1), dict(layer_decay=0.65, min_scale=0.1)),
        ("layer_decay=0.5, min_scale=0.05", dict(layer_decay=0.5, min_scale=0.05), dict(layer_decay=0.5, min_scale=0.05)),
        ("per-layer list, 3 distinct values", dict(layer_decay=[0.1] * 5 + [0.5] * 5 + [1.0] * 4), None),
        ("weight_decay=0", dict(layer_decay=0.75, weight_decay=0.0), dict(layer_decay=0.75, weight_decay=0.0)),
    ]
    rows = []
    for label, mine, theirs in cases:
        with record_merges() as seen:
            groups = ours(model, **mine)
        before, after = seen[-1]
        assert after == len(groups)
        merged = [g for g in groups if "merged_layer_ids" in g]
        rows.append([
            label, before, after, len(merged), ", ".join(g["name"] for g in merged[:2]) or "-",
            len(timms(model, **theirs)) if theirs is not None else "n/a",
        ])
    print(c.table(["setting", "groups before merge", "groups after", "merged groups", "e.g.", "timm groups"], rows, align="lrrrlr"))
    print("\ntimm does not merge: every (layer, weight decay) pair is a group even when the lr is clamped to one value.")


def memory_table(model_names: list[str]) -> None:
    c.section("4. Memory: one call on a model with real CPU tensors")
    rows = []
    for label in model_names:
        model = c.timm_model(TIMM_NAMES[label], "cpu")
        tensors, elements = c.parameter_count(model)
        ptrs = {id(p): p.data_ptr() for p in model.parameters()}
        ours(model)  # warm: imports and caches are not the call's memory
        torch_bytes, heap_peak, groups = measure_memory(lambda m=model: ours(m))
        held = [p for g in groups for p in g["params"]]
        same_objects = all(id(p) in ptrs for p in held) and len(held) == len({id(p) for p in held}) == tensors
        same_storage = all(p.data_ptr() == ptrs[id(p)] for p in held)
        rows.append([
            label, tensors, c.fmt_count(elements), f"{elements * 4 / 2**20:,.0f}", f"{torch_bytes / 2**10:,.1f}",
            f"{heap_peak / 2**20:.2f}", "yes" if same_objects else "NO", "yes" if same_storage else "NO",
        ])
        del model, groups, held
    print(c.table(
        ["model", "tensors", "params", "parameter MiB", "torch KiB allocated", "Python heap peak MiB",
         "groups hold the model's parameters", "same storage"],
        rows,
    ))
    print("\ntorch KiB: every CPU allocation of aten ops during one auto_layer_decay call (torch profiler, "
          "profile_memory). Python heap peak: tracemalloc, names and dicts included. The meta-device rows of "
          "section 1 show the same call on models that have no storage at all.")


TIMM_NAMES = {"ViT-S/16 (timm)": "vit_small_patch16_224", "ViT-B/16 (timm)": "vit_base_patch16_224",
              "ViT-L/16 (timm)": "vit_large_patch16_224", "ConvNeXt-B (timm)": "convnext_base"}


def measure_memory(call: Callable[[], list[dict]]) -> tuple[int, int, list[dict]]:
    """(bytes torch allocated, peak Python heap bytes, the call's result) of one call."""
    import tracemalloc

    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        groups = call()
    torch_bytes = sum(max(event.cpu_memory_usage, 0) for event in prof.events() if event.cpu_parent is None)
    tracemalloc.start()
    call()
    heap_peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return torch_bytes, heap_peak, groups


def profile(names: list[str], sizes: tuple[int, ...]) -> None:
    c.section("cProfile of one auto_layer_decay call (top functions by own time)")
    cases = [(label, MODELS[label]) for label in names[:2]] + [(f"deep tree {sizes[-1]:,}", lambda: c.synthetic("deep", sizes[-1]))]
    for label, build in cases:
        model = build()
        ours(model)
        profiler = cProfile.Profile()
        profiler.enable()
        ours(model)
        profiler.disable()
        out = io.StringIO()
        pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(15)
        print(f"#### {label}\n\n```")
        print("\n".join(line[:160] for line in out.getvalue().strip().splitlines() if line.strip()))
        print("```\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog=__doc__.split("\n\n", 1)[1])
    c.add_common_arguments(parser)
    parser.add_argument("--sizes", type=int, nargs="+", help=f"tensor counts of the synthetic trees (default {SIZES})")
    parser.add_argument("--models", nargs="+", choices=list(MODELS), metavar="MODEL", help="a subset of: " + "; ".join(MODELS))
    parser.add_argument("--only", choices=["models", "scaling", "merging", "memory"], nargs="+", help="run only these sections")
    parser.add_argument("--profile", action="store_true", help="also print a cProfile of the largest cases")
    args = parser.parse_args(argv)
    c.quiet_libraries()
    torch.set_grad_enabled(False)

    names = args.models or (list(QUICK_MODELS) if args.quick else list(MODELS))
    sizes = tuple(args.sizes or (QUICK_SIZES if args.quick else SIZES))
    repeats = args.repeats or (3 if args.quick else 15)
    load = c.max_load(args)
    sections = set(args.only or ["models", "scaling", "merging", "memory"])

    print("## Building parameter groups\n")
    print("\n".join(f"- {line}" for line in c.machine_lines() + [c.python_path_note()]))
    if "models" in sections:
        model_table(names, repeats, load)
    if "scaling" in sections:
        scaling_table(sizes, max(3, repeats // 3), load)
    if "merging" in sections:
        merge_table("ViT-S/16 (timm)" if args.quick else "ViT-B/16 (timm)")
    if "memory" in sections:
        memory_table(["ViT-S/16 (timm)"] if args.quick else ["ViT-B/16 (timm)", "ConvNeXt-B (timm)"])
    if args.profile:
        profile(names, sizes)
    return 0


if __name__ == "__main__":
    sys.exit(main())
