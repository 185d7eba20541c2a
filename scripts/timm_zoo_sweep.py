"""Measure the timm adapter on every architecture in ``timm.list_models()``.

Each model is built without weights on the meta device (no memory, no download) and mapped with
``resolve_layer_map(model)`` at block and stage granularity. A forward pass on meta tensors
(shapes only, no arithmetic) then records the order in which operations first use each
parameter, and the map is checked against it: ids must never go down along that order. Per
architecture the sweep records: created, mapped, number of ids, stem id, head ids, timm's own
number of ids (the map of ``param_groups_layer_decay``), whether ours is at least as fine,
forward-order violations of both maps, unmapped trainable parameters, position tables that
``no_weight_decay()`` misses, and timings. Records go to a JSON lines file (one per model, so an
interrupted sweep resumes where it stopped); ``--summary`` turns them into the markdown of
``docs/timm_coverage.md``.

Examples:
    python scripts/timm_zoo_sweep.py --out /tmp/timm_sweep.jsonl            # all ~1,370 (10-20 min)
    python scripts/timm_zoo_sweep.py --filter 'convnext*' --limit 5 --out /tmp/s.jsonl
    python scripts/timm_zoo_sweep.py --summary /tmp/timm_sweep.jsonl > docs/timm_coverage_table.md
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import logging
import sys
import time
import traceback
import warnings
from collections import Counter, defaultdict
from pathlib import Path
from typing import Iterable, Optional

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
from torch import nn  # noqa: E402

from hf_timm_layerdecay._compat import timm_builds_on_meta  # noqa: E402
from hf_timm_layerdecay.adapters import timm as timm_adapter  # noqa: E402
from hf_timm_layerdecay.adapters.options import AutoStrategy  # noqa: E402
from hf_timm_layerdecay.api import resolve_layer_map  # noqa: E402
from hf_timm_layerdecay.compare import timm_layer_map  # noqa: E402
from hf_timm_layerdecay.core.weight_decay import NameMatcher, no_weight_decay_list  # noqa: E402
from hf_timm_layerdecay.verify import first_use_order, order_violations  # noqa: E402

logger = logging.getLogger("timm_zoo_sweep")


def meta_input(model: nn.Module) -> torch.Tensor:
    size = (getattr(model, "pretrained_cfg", None) or {}).get("input_size") or (3, 224, 224)
    return torch.empty(1, *size, device="meta")


def sweep_one(name: str, forward: bool = True) -> dict:
    """Everything recorded for one architecture."""
    import timm

    record: dict = {"model": name, "created": False, "mapped": False}
    start = time.perf_counter()
    try:
        with torch.device("meta"):
            model = timm.create_model(name, pretrained=False).eval()
    except Exception as exc:  # noqa: BLE001 - a sweep records failures, it does not stop on them
        record["error"] = f"create: {type(exc).__name__}: {str(exc)[:200]}"
        return record
    record.update(created=True, create_s=round(time.perf_counter() - start, 3))
    record["family"] = type(model).__module__.rsplit(".", 1)[-1]
    record["has_group_matcher"] = callable(getattr(model, "group_matcher", None))
    params = dict(model.named_parameters())
    record["params"] = len(params)

    start = time.perf_counter()
    try:
        layer_map = resolve_layer_map(model)
        stage_map = resolve_layer_map(model, AutoStrategy(granularity="stage"))
    except Exception as exc:  # noqa: BLE001
        record["error"] = f"map: {type(exc).__name__}: {str(exc)[:200]}"
        record["traceback"] = traceback.format_exc(limit=3)
        return record
    record["map_s"] = round(time.perf_counter() - start, 3)
    ids = dict(layer_map.ids)
    head = timm_adapter.classifier_names(model)
    record.update(
        mapped=True,
        num_layers=layer_map.num_layers,
        n_ids=len(set(ids.values())),
        n_stage_ids=len(set(stage_map.ids.values())),
        stage_num_layers=stage_map.num_layers,
        unmapped=sorted(n for n, p in params.items() if p.requires_grad and n not in ids)[:5],
        first_param_id=ids[next(iter(params))] if params else None,
        head_ids=sorted({ids[n] for n in head}),
        notes=list(layer_map.notes),
    )
    listed = NameMatcher(no_weight_decay_list(model))
    record["extra_no_decay"] = sorted(
        n for n in timm_adapter.no_weight_decay_names(model) if params[n].ndim > 1 and not listed(n)
    )[:5]
    timm_ids = timm_layer_map(model)
    record["timm_n_ids"] = len(set(timm_ids.values()))
    record["at_least_as_fine"] = record["n_ids"] >= record["timm_n_ids"]
    record["merges_timm_groups"] = _merges(ids, timm_ids)
    if forward:
        _forward_check(model, ids, timm_ids, record)
    return record


def _merges(ours: dict[str, int], theirs: dict[str, int]) -> int:
    """How many of our ids hold parameters from more than one of timm's groups."""
    spans = defaultdict(set)
    for name, layer_id in ours.items():
        spans[layer_id].add(theirs.get(name))
    return sum(len(s) > 1 for s in spans.values())


def tokens_at_stem(name: str, layer_id: int) -> bool:
    """A token or position embedding kept at id 0 is no violation even when first used late
    (CaiT's and XCiT's class token joins at the class-attention blocks): embeddings belong to the
    stem by convention (BEiT, MAE, timm)."""
    return layer_id == 0 and timm_adapter.is_position_or_token(name)


def _forward_check(model: nn.Module, ids: dict, timm_ids: dict, record: dict) -> None:
    start = time.perf_counter()
    try:
        order = first_use_order(model, lambda m: m(meta_input(m)))
    except Exception as exc:  # noqa: BLE001 - some models cannot run on meta tensors
        record["forward"] = f"{type(exc).__name__}: {str(exc)[:120]}"
        return
    ours = order_violations(order, ids, exempt=tokens_at_stem)
    record.update(
        forward="ok",
        stem_id=ids[order[0]] if order else None,
        last_used_id=ids[order[-1]] if order else None,
        unused=len(ids) - len(order),
        violations=ours[:5],
        n_violations=len(ours),
        late_tokens=len(order_violations(order, ids)) - len(ours),
        timm_n_violations=len(order_violations(order, timm_ids, exempt=tokens_at_stem)),
        forward_s=round(time.perf_counter() - start, 3),
    )


def run_sweep(names: Iterable[str], out: Path, forward: bool) -> None:
    done = set()
    if out.exists():
        done = {json.loads(line)["model"] for line in out.read_text().splitlines() if line.strip()}
    with out.open("a") as sink:
        for name in names:
            if name in done:
                continue
            record = sweep_one(name, forward=forward)
            record["total_s"] = round(sum(record.get(k, 0) for k in ("create_s", "map_s", "forward_s")), 3)
            sink.write(json.dumps(record) + "\n")
            sink.flush()
            logger.info("%s: %s", name, _status(record))


def _status(record: dict) -> str:
    if not record["mapped"]:
        return record.get("error", "?")
    return f"{record['n_ids']} ids (timm {record['timm_n_ids']}), forward {record.get('forward')}, violations {record.get('n_violations')}"


def summarize(records: list[dict]) -> str:
    """The markdown summary of a sweep."""
    created = [r for r in records if r["created"]]
    mapped = [r for r in created if r["mapped"]]
    ok = [r for r in mapped if r["n_ids"] >= 2 and not r["unmapped"]]
    head_last = [r for r in mapped if not r["head_ids"] or r["head_ids"] == [r["num_layers"] - 1]]
    checked = [r for r in mapped if r.get("forward") == "ok"]
    clean = [r for r in checked if r["n_violations"] == 0]
    timm_clean = [r for r in checked if r["timm_n_violations"] == 0]
    stem0 = [r for r in checked if r["stem_id"] == 0]
    finer = [r for r in mapped if r["at_least_as_fine"]]
    worse = [r for r in checked if r["n_violations"] and not r["timm_n_violations"]]
    departs = [r for r in mapped if r["has_group_matcher"] and r["merges_timm_groups"]]
    lines = [
        f"| architectures in `timm.list_models()` | {len(records)} |",
        f"| created on the meta device | {len(created)} |",
        f"| mapped | {len(mapped)} |",
        f"| mapped with >= 2 ids and every trainable parameter placed | {len(ok)} |",
        f"| classifier at the last id (or no classifier) | {len(head_last)} |",
        f"| at least as many ids as timm's own map | {len(finer)} |",
        f"| forward pass on meta tensors ran (oracle checked) | {len(checked)} |",
        f"| ... ids never go down along the forward pass (ours) | {len(clean)} |",
        f"| ... ids never go down along the forward pass (timm's map) | {len(timm_clean)} |",
        f"| ... ours goes down where timm's does not | {len(worse)} |",
        f"| ... first parameter used has id 0 | {len(stem0)} |",
        f"| with group_matcher: some id of ours joins parameters of two of timm's groups (departures, below) | {len(departs)} |",
        f"| multi-dimensional position tables / tokens that `no_weight_decay()` misses (found by name) | "
        f"{sum(bool(r.get('extra_no_decay')) for r in mapped)} |",
    ]
    out = ["| measure | models |", "| --- | ---: |", *lines, ""]
    failures = Counter(r.get("error", "").split(":")[0] + ": " + r.get("error", "").split(":")[1].strip() for r in records if not r["mapped"])
    if failures:
        out += ["Failures by type:", "", *[f"- {k}: {v}" for k, v in failures.most_common()], ""]
    forward_failures = Counter(r["forward"].split(":")[0] for r in mapped if r.get("forward") not in (None, "ok"))
    if forward_failures:
        out += ["Forward pass on meta tensors not possible (map not oracle-checked):", ""]
        out += [f"- {k}: {v}" for k, v in forward_failures.most_common()] + [""]
    if departs:
        by_family = Counter(r["family"] for r in departs)
        out += ["Departures from timm's groups, by family:", "", *[f"- {k}: {v}" for k, v in by_family.most_common()], ""]
    bad = [r for r in checked if r["n_violations"]]
    if bad:
        out += ["Models whose map goes down along the forward pass:", ""]
        out += [f"- `{r['model']}` ({r['n_violations']}): {r['violations'][0]}" for r in bad] + [""]
    out += _reference_table(mapped)
    out += _family_table(mapped)
    out += _timing(records)
    return "\n".join(out)


#: Models whose numbers the documentation quotes (those present in the records are shown).
REFERENCE_MODELS = (
    "vit_small_patch16_224", "vit_base_patch16_224", "vit_large_patch16_224", "beit_base_patch16_224",
    "eva02_base_patch14_224", "swin_base_patch4_window7_224", "convnext_tiny", "convnext_base",
    "resnet50", "resnet152", "efficientnet_b0", "regnety_032", "maxvit_tiny_tf_224", "coatnet_0_rw_224",
    "pvt_v2_b2", "hiera_base_224", "mambaout_base", "densenet121", "vgg16",
)


def _reference_table(mapped: list[dict], decay: float = 0.75, depth: int = 13) -> list[str]:
    """Depth per granularity and the stem's scale at one decay, for well-known models."""
    by_name = {r["model"]: r for r in mapped}
    rows = [
        f"| model | ids (block) | stem scale at {decay} | ids (stage) | stem scale at {decay} | timm's ids |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name in REFERENCE_MODELS:
        if name in by_name:
            r = by_name[name]
            block, stage = r["num_layers"], r["stage_num_layers"]
            rows.append(
                f"| `{name}` | {block} | {decay ** (block - 1):.2g} | {stage} | {decay ** (stage - 1):.2g} | {r['timm_n_ids']} |"
            )
    if len(rows) == 2:
        return []
    note = f"With `normalize_depth={depth}` (the range of ViT-B) the stem gets {decay}^{depth} = {decay ** depth:.2g} on every model."
    return ["Depth of well-known models:", "", *rows, "", note, ""]


def _family_table(mapped: list[dict]) -> list[str]:
    families = defaultdict(list)
    for r in mapped:
        families[r["family"]].append(r)
    rows = ["| family (timm module) | models | ids (block) | ids (stage) | timm's ids | forward-checked | timm's map goes down |", "| --- | ---: | --- | --- | --- | ---: | ---: |"]
    for family, rs in sorted(families.items()):
        span = lambda key: _span(r[key] for r in rs)  # noqa: E731
        checked = [r for r in rs if r.get("forward") == "ok"]
        rows.append(
            f"| {family} | {len(rs)} | {span('num_layers')} | {span('stage_num_layers')} | {span('timm_n_ids')} | "
            f"{len(checked)} | {sum(r['timm_n_violations'] > 0 for r in checked)} |"
        )
    return ["Per family (ids = size of the id frame, min-max over the family's models):", "", *rows, ""]


def _span(values: Iterable[int]) -> str:
    values = list(values)
    return f"{min(values)}" if min(values) == max(values) else f"{min(values)}-{max(values)}"


def _timing(records: list[dict]) -> list[str]:
    def total(key: str) -> float:
        return sum(r.get(key, 0) for r in records)

    slowest = sorted(records, key=lambda r: r.get("map_s", 0), reverse=True)[:3]
    return [
        f"Time (seconds, summed over models): create {total('create_s'):.0f}, map (block + stage) {total('map_s'):.0f}, "
        f"meta forward + oracle {total('forward_s'):.0f}. Slowest maps: "
        + ", ".join(f"`{r['model']}` {r.get('map_s', 0):.2f}" for r in slowest),
        "",
    ]


def parse_args(argv: Optional[list[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog="Examples:" + __doc__.split("Examples:")[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--out", type=Path, help="JSON lines file for the records (appended to; models already in it are skipped)")
    parser.add_argument("--filter", default="*", help="fnmatch pattern of model names (default: all)")
    parser.add_argument("--limit", type=int, help="at most this many models")
    parser.add_argument("--every", type=int, default=1, help="take every n-th model name (a quick sample)")
    parser.add_argument("--no-forward", action="store_true", help="skip the forward-order check on meta tensors")
    parser.add_argument("--summary", type=Path, help="print the markdown summary of a records file and exit")
    return parser.parse_args(argv)


def main(argv: Optional[list[str]] = None) -> int:
    args = parse_args(argv)
    if args.summary:
        records = [json.loads(line) for line in args.summary.read_text().splitlines() if line.strip()]
        print(summarize(records))
        return 0
    if args.out is None:
        print("error: --out FILE is required to run a sweep (or --summary FILE to summarize one)", file=sys.stderr)
        return 2
    import timm

    if not timm_builds_on_meta():
        print(
            f"error: timm {timm.__version__} cannot build a ViT on the meta device (it calls .item() on the drop-path "
            "rates); the sweep builds every architecture there and needs timm >= 1.0.21",
            file=sys.stderr,
        )
        return 2
    names = [n for n in timm.list_models() if fnmatch.fnmatchcase(n, args.filter)][:: args.every][: args.limit]
    run_sweep(names, args.out, forward=not args.no_forward)
    return 0


if __name__ == "__main__":
    # Progress lines only: the models' and the adapter's own warnings (one per odd model) would
    # drown them; the records keep the adapter's notes.
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    logging.getLogger("timm").setLevel(logging.ERROR)
    logging.getLogger("hf_timm_layerdecay").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore")
    sys.exit(main())
