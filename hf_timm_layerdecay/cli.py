"""Command line: ``python -m hf_timm_layerdecay inspect MODEL`` and ``compare MODEL``.

Models are built without weights, on the meta device, offline: a timm model name, a transformers
model type (from its default config) or a path to a local ``config.json``.
"""

from __future__ import annotations

import argparse
import inspect
import json
import logging
import sys
from pathlib import Path
from typing import Optional, Sequence

# Only what parsing needs is imported here: torch, timm and transformers load when a command runs,
# so that `--help` and a mistyped option answer at once.
from .config import LayerDecayConfig, option_default, option_fields
from .model_zoo import TASKS, ModelNotFound, build_model

logger = logging.getLogger(__name__)


def inspect_model(args: argparse.Namespace) -> int:
    from .api import layer_decay_plan
    from .core.report import layer_decay_report

    if args.names < 0:
        raise ValueError(f"--names must be >= 0, got {args.names}")
    if args.plot and not Path(args.plot).resolve().parent.is_dir():
        raise ValueError(f"--plot {args.plot}: the folder {Path(args.plot).resolve().parent} does not exist")
    config = LayerDecayConfig(**{option.name: getattr(args, option.name) for option in option_fields()})
    model = build_model(args.model, task=args.task)
    plan = layer_decay_plan(model, config, lr=args.lr)
    groups = plan.groups
    notes = plan.layer_map.notes if plan.layer_map is not None else ()
    report = layer_decay_report(groups, model, notes=notes)
    changed = {name: value for name, value in config.changed().items() if name not in _ALWAYS_SHOWN}
    options = [f"layer_decay={_shown(config.layer_decay)}", f"lr={args.lr:g}", f"weight_decay={config.weight_decay:g}"]
    options += [f"{name}={_shown(value)}" for name, value in changed.items()]
    title = f"{args.model} ({type(model).__name__}): {', '.join(options)}"
    if args.json:
        json.dump({"model": args.model, "class": type(model).__name__, "layer_decay": config.layer_decay, "lr": args.lr,
                   **report.to_dict()}, sys.stdout, indent=1)
        sys.stdout.write("\n")
    else:
        print(title)
        print(report.table(max_names=args.names))
    if args.plot:
        from .plot import plot_layer_decay

        plot_layer_decay(groups, title=title).savefig(args.plot, dpi=120)
        print(f"plot written to {args.plot}", file=sys.stderr)
    return 0


_ALWAYS_SHOWN = ("layer_decay", "weight_decay")


def _shown(value: object) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, dict):
        return ",".join(f"{k}={v:g}" for k, v in value.items())
    if isinstance(value, tuple):
        return ",".join(map(str, value))
    return str(value)


def compare_model(args: argparse.Namespace) -> int:
    from .compare import compare_with_timm

    model = build_model(args.model)
    if not type(model).__module__.startswith("timm."):
        raise ValueError(f"compare needs a timm model; {args.model} is {type(model).__name__}")
    print(compare_with_timm(model, args.model, layer_decay=args.layer_decay, weight_decay=args.weight_decay).table())
    return 0


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="hf_timm_layerdecay", description="Layer-wise learning-rate decay, inspected.")
    commands = top.add_subparsers(dest="command", required=True)

    inspect = commands.add_parser("inspect", help="print the layer-decay parameter groups of a model")
    inspect.add_argument("model", help=_MODEL_HELP)
    inspect.add_argument("--task", choices=list(TASKS), help="transformers head to build (default: base model)")
    inspect.add_argument("--lr", type=float, default=1e-3, help="base (head) learning rate (default 1e-3)")
    _add_options(inspect)
    inspect.add_argument("--names", type=int, default=3, help="parameter names shown per group (default 3)")
    inspect.add_argument("--json", action="store_true", help="print JSON instead of a table")
    inspect.add_argument("--plot", metavar="FILE.png", help="also plot scale and parameters per layer (matplotlib)")
    inspect.set_defaults(run=inspect_model)

    compare = commands.add_parser("compare", help="compare with timm's own layer-decay grouping (timm models)")
    _model_and_decay(compare)
    compare.set_defaults(run=compare_model)
    return top


_MODEL_HELP = "timm model name, transformers model type, or path to a config.json"


def _add_options(command: argparse.ArgumentParser) -> None:
    """A flag for every option of :class:`LayerDecayConfig` (``min_scale`` -> ``--min-scale``)."""
    for option in option_fields():
        flag = "--" + option.name.replace("_", "-")
        default = option_default(option.name)
        door = option.metadata["door"]
        kwargs: dict = {"dest": option.name, "default": default}
        if door is bool:
            kwargs["action"] = argparse.BooleanOptionalAction
        elif door == list[str]:
            kwargs.update(nargs="*", metavar="PATTERN=X" if isinstance(default, dict) else "NAME")
        else:
            kwargs["type"] = float if door in (float, Optional[float]) else door if inspect.isfunction(door) else str
            if option.metadata["choices"]:
                kwargs["choices"] = list(option.metadata["choices"])
        shown = "" if isinstance(default, (dict, tuple)) or default is None else f" (default {default})"
        command.add_argument(flag, help=option.metadata["help"] + shown, **kwargs)


def _model_and_decay(command: argparse.ArgumentParser) -> None:
    command.add_argument("model", help=_MODEL_HELP)
    command.add_argument("--layer-decay", type=float, default=0.75, help="decay per layer (default 0.75)")
    command.add_argument("--weight-decay", type=float, default=0.05, help="weight decay (default 0.05)")


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        return args.run(args)
    except (ModelNotFound, ValueError, TypeError, ImportError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
