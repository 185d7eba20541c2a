"""Shared helpers of the benchmark scripts: machine description, quiet-machine wait, timing,
models built without weights, tables.

Not a test module and not part of the library: the scripts in this folder import it by path
(``python benchmarks/<script>.py`` puts this folder on ``sys.path``).
"""

from __future__ import annotations

import datetime
import gc
import logging
import math
import os
import platform
import statistics
import subprocess
import sys
import time
import warnings
from typing import Callable, Iterable, Optional, Sequence

import torch
from torch import nn

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")


def quiet_libraries() -> None:
    """Silence the warnings the benchmarked calls print on purpose (timm's "layer decay has no
    effect" for models it has no rule for, our "no lr" hint): they are not results."""
    warnings.simplefilter("ignore")
    logging.disable(logging.WARNING)


# ---------------------------------------------------------------- machine


def cpu_model() -> str:
    """``lscpu``'s model name (falls back to ``platform.processor()``)."""
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
        for line in out.splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except (OSError, subprocess.SubprocessError):
        pass
    return platform.processor() or "unknown CPU"


def machine_lines(device: str = "cpu") -> list[str]:
    """One line per fact about the machine and the software measured."""
    import timm
    import transformers

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    try:
        import psutil

        memory = f"{psutil.virtual_memory().total / 2**30:.0f} GiB RAM"
    except ImportError:  # psutil comes with the notebook extras; the benchmarks do not need it
        memory = "RAM unknown"
    lines = [
        f"date: {datetime.datetime.now().strftime('%Y-%m-%d %H:%M')}",
        f"CPU: {cpu_model()}, {cores} cores usable, torch threads {torch.get_num_threads()}, {memory}",
        f"python {platform.python_version()}, torch {torch.__version__}, timm {timm.__version__}, "
        f"transformers {transformers.__version__}",
    ]
    if device.startswith("cuda") and torch.cuda.is_available():
        lines.append(f"GPU: {torch.cuda.get_device_name(device)}, CUDA {torch.version.cuda}")
    else:
        lines.append("GPU: none used")
    lines.append(f"load average at start (1/5/15 min): {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    return lines


def wait_for_quiet(max_load: Optional[float], timeout: float = 1800.0, poll: float = 15.0) -> None:
    """Sleep until the 1-minute load average is below ``max_load`` (``None``: do not wait).

    Timings taken while other jobs run are noise; the wait gives up after ``timeout`` seconds
    and says so, so a busy machine still gets a (marked) result.
    """
    if max_load is None:
        return
    start = time.monotonic()
    while os.getloadavg()[0] >= max_load:
        if time.monotonic() - start > timeout:
            print(f"# load average still {os.getloadavg()[0]:.2f} after {timeout:.0f} s; measuring anyway", flush=True)
            return
        print(f"# waiting for a quiet machine: load {os.getloadavg()[0]:.2f} >= {max_load}", flush=True)
        time.sleep(poll)


def load_now() -> float:
    return os.getloadavg()[0]


# ---------------------------------------------------------------- timing


def time_once(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def side_by_side(
    fns: dict[str, Callable[[], object]], repeats: int, warmup: int = 1, collect: bool = True
) -> dict[str, list[float]]:
    """Run every function ``repeats`` times, interleaved (a, b, c, a, b, c, ...), so that a
    change of machine load hits all of them alike; returns the seconds of every run.

    With ``collect``, a full garbage collection runs before each measured call, so that no call
    pays for the garbage of the previous one; it also leaves the processor's caches cold, as a
    training script's single call finds them. Without it, calls run back to back.
    """
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            if collect:
                gc.collect()
            times[name].append(time_once(fn))
    return times


def median(values: Iterable[float]) -> float:
    return statistics.median(list(values))


def paired_ratio(numerator: Sequence[float], denominator: Sequence[float]) -> float:
    """Median of the run-by-run ratios (runs measured next to each other)."""
    return statistics.median(a / b for a, b in zip(numerator, denominator))


def growth_exponent(sizes: Sequence[float], seconds: Sequence[float]) -> float:
    """Slope of log(time) against log(size), least squares: 1.0 is linear growth."""
    xs = [math.log(s) for s in sizes]
    ys = [math.log(t) for t in seconds]
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sum((x - mx) ** 2 for x in xs)


def fmt_ms(seconds: float) -> str:
    ms = seconds * 1e3
    return f"{ms:.3g}" if ms < 100 else f"{ms:,.0f}"


# ---------------------------------------------------------------- models


def timm_model(name: str, device: str = "meta") -> nn.Module:
    import timm

    with torch.device(device):
        return timm.create_model(name, pretrained=False)


def llama_config(size: str, num_hidden_layers: Optional[int] = None):
    """Llama configurations by shape: ``7b`` (Llama-2-7B), ``1b`` (TinyLlama-1.1B: 22 layers of
    width 2048, grouped-query attention), optionally with another depth."""
    from transformers import LlamaConfig

    shapes = {
        "7b": dict(hidden_size=4096, intermediate_size=11008, num_hidden_layers=32, num_attention_heads=32,
                   num_key_value_heads=32, vocab_size=32000),
        "1b": dict(hidden_size=2048, intermediate_size=5632, num_hidden_layers=22, num_attention_heads=32,
                   num_key_value_heads=4, vocab_size=32000),
    }
    config = dict(shapes[size])
    if num_hidden_layers is not None:
        config["num_hidden_layers"] = num_hidden_layers
    return LlamaConfig(**config)


def llama(size: str, device: str = "meta", num_hidden_layers: Optional[int] = None) -> nn.Module:
    from transformers import LlamaForCausalLM

    with torch.device(device):
        return LlamaForCausalLM(llama_config(size, num_hidden_layers))


def transformers_model(model_type: str, device: str = "meta", **config_changes) -> nn.Module:
    """A transformers model from its default configuration (``AutoConfig.for_model``)."""
    import transformers

    config = transformers.AutoConfig.for_model(model_type, **config_changes)
    auto = transformers.AutoModelForCausalLM if model_type != "switch_transformers" else transformers.AutoModelForSeq2SeqLM
    with torch.device(device):
        return auto.from_config(config)


def parameter_count(model: nn.Module) -> tuple[int, int]:
    """(tensors, elements) of the model's parameters."""
    params = list(model.parameters())
    return len(params), sum(p.numel() for p in params)


def fmt_count(n: float) -> str:
    for unit, size in (("B", 1e9), ("M", 1e6), ("k", 1e3)):
        if n >= size:
            return f"{n / size:.3g}{unit}"
    return str(int(n))


# ---------------------------------------------------------------- synthetic module trees


class MLPBlock(nn.Module):
    """6 tensors: a norm and two linear layers (tiny widths: only the tree matters)."""

    def __init__(self, width: int = 4) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(width)
        self.fc1 = nn.Linear(width, width)
        self.fc2 = nn.Linear(width, width)


class Stage(nn.Module):
    def __init__(self, blocks: int, width: int = 4) -> None:
        super().__init__()
        self.downsample = nn.Linear(width, width)
        self.blocks = nn.ModuleList(MLPBlock(width) for _ in range(blocks))


class DeepTree(nn.Module):
    """Stem, 4 stages of many small blocks (nested ``ModuleList`` s), head: layers grow with size."""

    def __init__(self, tensors: int, stages: int = 4, width: int = 4) -> None:
        super().__init__()
        per_stage = max(1, round((tensors - 6) / stages / 6))
        self.stem = nn.Linear(width, width)
        self.stages = nn.ModuleList(Stage(per_stage, width) for _ in range(stages))
        self.head = nn.Linear(width, width)


class Expert(nn.Module):
    """3 weight tensors held directly (no submodules), as many MoE implementations do.

    (Experts made of ``nn.Linear`` modules would be taken for a stack of sequential blocks by
    the structural strategy, one layer id per expert; see docs/benchmarks.md.)
    """

    def __init__(self, width: int = 4) -> None:
        super().__init__()
        self.w_gate = nn.Parameter(torch.empty(width, width))
        self.w_up = nn.Parameter(torch.empty(width, width))
        self.w_down = nn.Parameter(torch.empty(width, width))


class MoELayer(nn.Module):
    def __init__(self, experts: int, width: int = 4) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(width)
        self.router = nn.Linear(width, experts, bias=False)
        self.experts = nn.ModuleList(Expert(width) for _ in range(experts))


class WideTree(nn.Module):
    """An unfused mixture-of-experts: 32 layers, experts per layer grow with size, so the
    number of layers (and of groups) stays fixed while the tensors grow."""

    def __init__(self, tensors: int, layers: int = 32, width: int = 4) -> None:
        super().__init__()
        experts = max(1, round((tensors - 4) / layers / 3 - 1))
        self.embed = nn.Embedding(16, width)
        self.layers = nn.ModuleList(MoELayer(experts, width) for _ in range(layers))
        self.norm = nn.LayerNorm(width)
        self.head = nn.Linear(width, 16, bias=False)


def synthetic(kind: str, tensors: int) -> nn.Module:
    """A synthetic module tree with about ``tensors`` parameter tensors, on the meta device."""
    with torch.device("meta"):
        return DeepTree(tensors) if kind == "deep" else WideTree(tensors)


# ---------------------------------------------------------------- tables


def table(headers: Sequence[str], rows: Iterable[Sequence[object]], align: Optional[str] = None) -> str:
    """A Markdown table (``align``: one of ``l``/``r`` per column; numbers right by default)."""
    rows = [[str(c) for c in row] for row in rows]
    if align is None:
        align = "l" + "r" * (len(headers) - 1)
    widths = [max(len(str(h)), *(len(r[i]) for r in rows)) if rows else len(str(h)) for i, h in enumerate(headers)]

    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(c.ljust(w) if a == "l" else c.rjust(w) for c, w, a in zip(cells, widths, align)) + " |"

    rule = "|" + "|".join(("-" * (w + 1) + ":") if a == "r" else (":" + "-" * (w + 1)) for w, a in zip(widths, align)) + "|"
    return "\n".join([line([str(h) for h in headers]), rule, *(line(r) for r in rows)])


def section(title: str) -> None:
    print(f"\n### {title}\n", flush=True)


def python_path_note() -> str:
    import hf_timm_layerdecay

    return f"hf_timm_layerdecay from {os.path.dirname(hf_timm_layerdecay.__file__)}"


def add_common_arguments(parser) -> None:
    parser.add_argument("--quick", action="store_true", help="a fast smoke run: small sizes, few repeats")
    parser.add_argument(
        "--max-load", type=float, default=1.2,
        help="wait until the 1-minute load average is below this before each timed section (default 1.2)",
    )
    parser.add_argument("--no-wait", action="store_true", help="do not wait for a quiet machine")
    parser.add_argument("--repeats", type=int, default=None, help="timed runs per measurement (median reported)")


def max_load(args) -> Optional[float]:
    return None if args.no_wait or args.quick else args.max_load


if __name__ == "__main__":  # pragma: no cover
    print("\n".join(machine_lines()))
    sys.exit(0)
