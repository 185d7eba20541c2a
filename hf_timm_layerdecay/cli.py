"""Command line: ``python -m hf_timm_layerdecay inspect MODEL``.

Builds the model without weights (offline, on the meta device) and prints its layer-decay
parameter groups.
"""

from __future__ import annotations

import argparse
import difflib
import json
import logging
import sys
from typing import Optional, Sequence

import torch
from torch import nn

from .api import auto_layer_decay, resolve_layer_map
from .core.report import layer_decay_report

logger = logging.getLogger(__name__)


class ModelNotFound(LookupError):
    """The model name is not known to any supported model zoo."""


def build_model(name: str) -> nn.Module:
    """A timm model by name, without pretrained weights, on the meta device (no memory used)."""
    import timm

    if name not in timm.list_models():
        close = difflib.get_close_matches(name, timm.list_models(), n=5, cutoff=0.6)
        hint = f" Close matches: {', '.join(close)}." if close else ""
        raise ModelNotFound(f"unknown model {name!r}.{hint} See timm.list_models() for the names.")
    with torch.device("meta"):
        return timm.create_model(name, pretrained=False)


def inspect_model(args: argparse.Namespace) -> int:
    model = build_model(args.model)
    strategy = args.strategy
    groups = auto_layer_decay(
        model, lr=args.lr, layer_decay=args.layer_decay, weight_decay=args.weight_decay, strategy=strategy
    )
    notes = resolve_layer_map(model, strategy).notes
    report = layer_decay_report(groups, model, notes=notes)
    if args.json:
        json.dump({"model": args.model, "layer_decay": args.layer_decay, "lr": args.lr, **report.to_dict()}, sys.stdout, indent=1)
        sys.stdout.write("\n")
    else:
        print(f"{args.model}: layer_decay={args.layer_decay}, lr={args.lr:g}, weight_decay={args.weight_decay:g}")
        print(report.table(max_names=args.names))
    return 0


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="hf_timm_layerdecay", description="Layer-wise learning-rate decay, inspected.")
    commands = top.add_subparsers(dest="command", required=True)
    inspect = commands.add_parser("inspect", help="print the layer-decay parameter groups of a model")
    inspect.add_argument("model", help="a timm model name, e.g. vit_base_patch16_224")
    inspect.add_argument("--layer-decay", type=float, default=0.75, help="decay per layer (default 0.75)")
    inspect.add_argument("--lr", type=float, default=1e-3, help="base (head) learning rate (default 1e-3)")
    inspect.add_argument("--weight-decay", type=float, default=0.05, help="weight decay (default 0.05)")
    inspect.add_argument("--strategy", default="auto", choices=["auto", "structural"], help="how layer ids are found")
    inspect.add_argument("--names", type=int, default=3, help="parameter names shown per group (default 3)")
    inspect.add_argument("--json", action="store_true", help="print JSON instead of a table")
    inspect.set_defaults(run=inspect_model)
    return top


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        return args.run(args)
    except (ModelNotFound, ValueError, TypeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
