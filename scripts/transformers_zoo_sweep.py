"""Coverage of the transformers adapter over every model type of transformers' auto mappings.

Every model class of the auto mappings (the base models of ``MODEL_MAPPING_NAMES`` and every
task-head mapping: sequence classification, causal LM, image classification, ...) is built on the
meta device from its default configuration with the number of layers shrunk, and mapped with
``strategy="auto"``. Per class it records whether the model was created, whether it is *mapped*
(blocks found in the module structure, each block of a stack its own id, every parameter with an
id), the stacks, towers and ids, and where the parameters outside every block went (stem, head,
or next to a block).

    python scripts/transformers_zoo_sweep.py --json /tmp/zoo.json --summary docs/transformers_coverage.md

Takes about 70 s on 2 idle CPU cores. ``--types bert t5`` restricts the sweep to some types.

``--forward`` checks the ids against a real forward pass instead: every causal-LM and
sequence-classification class is built on the CPU with generic tiny widths (hidden size 64, 2
layers, 4 experts, ...), run on 8 token ids, and checked with the oracle of the tests
(``tests/hf_models.py``: ids never go down along the first-run order of modules; a tied head
exempt). Classes that do not build or run with the generic widths are counted as such.

    python scripts/transformers_zoo_sweep.py --forward --json /tmp/zoo_forward.json \\
        --summary docs/transformers_coverage.md
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import copy
import io
import json
import logging
import os
import signal
import sys
import time
import traceback
import warnings
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

#: Configuration attributes that count layers; shrunk to ``--layers``.
LAYER_KEYS = (
    "num_hidden_layers", "num_layers", "n_layer", "n_layers", "encoder_layers", "decoder_layers",
    "num_encoder_layers", "num_decoder_layers", "decoder_num_hidden_layers", "depth", "num_blocks",
)
#: Width attributes set to at most these values for the CPU forward check (``--forward``).
TINY_WIDTHS = dict(
    hidden_size=64, intermediate_size=128, num_attention_heads=4, num_key_value_heads=2, head_dim=16,
    num_experts=4, num_local_experts=4, n_routed_experts=4, num_experts_per_tok=2, moe_intermediate_size=64,
    shared_expert_intermediate_size=64, n_embd=64, n_head=4, n_inner=128, d_model=64, ffn_dim=128,
)
#: Heads checked by ``--forward`` (they all take ``input_ids``).
FORWARD_MAPPINGS = ("MODEL_FOR_CAUSAL_LM", "MODEL_FOR_SEQUENCE_CLASSIFICATION")
#: Mappings that are not model classes of their own (processors, configs) or duplicate others.
SKIPPED_MAPPINGS = {"MODEL_FOR_BACKBONE_MAPPING_NAMES"}

logger = logging.getLogger("transformers_zoo_sweep")


def mapping_classes(types: list[str] | None = None) -> dict[str, dict[str, list[str]]]:
    """``{model_type: {class name: [mapping names]}}`` over every auto mapping."""
    from transformers.models.auto import modeling_auto

    found: dict[str, dict[str, list[str]]] = collections.defaultdict(lambda: collections.defaultdict(list))
    for mapping_name in sorted(dir(modeling_auto)):
        if not mapping_name.startswith("MODEL") or not mapping_name.endswith("MAPPING_NAMES"):
            continue
        if mapping_name in SKIPPED_MAPPINGS:
            continue
        mapping = getattr(modeling_auto, mapping_name)
        if not isinstance(mapping, dict):
            continue
        for model_type, class_names in mapping.items():
            if types and model_type not in types:
                continue
            for class_name in [class_names] if isinstance(class_names, str) else class_names:
                found[model_type][class_name].append(mapping_name.removesuffix("_MAPPING_NAMES"))
    return {t: dict(c) for t, c in sorted(found.items())}


def shrink(config_dict: dict, layers: int) -> dict:
    """A copy of a config dict with every layer count at most ``layers``; lists that had one
    entry per layer (``layer_types``) are cut to match. Sub-config dicts are shrunk too. A
    pretrained backbone is turned off."""
    out = copy.deepcopy(config_dict)
    if out.get("use_pretrained_backbone"):
        out["use_pretrained_backbone"] = False  # nothing is downloaded (DETR's default before transformers 5)
    for key, value in list(out.items()):
        if isinstance(value, dict):
            out[key] = shrink(value, layers)
    for key in LAYER_KEYS:
        value = out.get(key)
        if isinstance(value, int) and not isinstance(value, bool) and value > layers:
            for other, entries in out.items():
                if isinstance(entries, list) and len(entries) == value:
                    out[other] = entries[:layers]
            out[key] = layers
    return out


def tiny(config_dict: dict) -> dict:
    """A copy of a config dict with the widths of :data:`TINY_WIDTHS` at most those values."""
    out = {k: tiny(v) if isinstance(v, dict) else v for k, v in config_dict.items()}
    for key, limit in TINY_WIDTHS.items():
        value = out.get(key)
        if isinstance(value, int) and not isinstance(value, bool) and value > limit:
            out[key] = limit
    return out


def build(model_type: str, class_name: str, layers: int):
    """The model on the meta device and whether its config was shrunk."""
    import transformers
    from transformers import AutoConfig

    cls = getattr(transformers, class_name)
    default = AutoConfig.for_model(model_type)
    attempts = [(True, lambda: type(default).from_dict(shrink(default.to_dict(), layers))), (False, lambda: default)]
    errors = []
    for shrunk, make_config in attempts:
        try:
            config = make_config()
            with torch.device("meta"):
                return cls._from_config(config), shrunk
        except Exception as error:  # noqa: BLE001 - recorded per model
            errors.append(f"{type(error).__name__}: {_one_line(error)}")
    raise RuntimeError(errors[-1])


def _one_line(error: Exception, limit: int = 160) -> str:
    return " ".join(str(error).split())[:limit]


def inspect_model(model, head_mapping: bool) -> dict:
    """What the adapter does with one model (the sweep's record for it)."""
    from hf_timm_layerdecay.adapters import transformers as adapter
    from hf_timm_layerdecay.adapters.transformers.layout import Stack, find_layout
    from hf_timm_layerdecay.adapters.transformers.numbering import number, plan_region, tower_names
    from hf_timm_layerdecay.adapters.options import AutoStrategy

    assert adapter.applies(model)
    layer_map = adapter.layer_map(model, AutoStrategy())
    names = [n for n, _ in model.named_parameters()]
    record = dict(params=len(names), num_layers=layer_map.num_layers, notes=list(layer_map.notes))
    layout = find_layout(model)
    stacks = [e for r in layout.regions() for e in r.elements if isinstance(e, Stack)]
    record["stacks"] = [f"{s.path} ({len(s.units)})" for s in stacks]
    record["regions"] = [f"{r.kind}:{r.path}" for r in layout.regions() if r.path]
    missing = [n for n in names if n not in layer_map.ids]
    problems = []
    if missing:
        problems.append(f"{len(missing)} parameters without an id")
    if not stacks:
        problems.append("no blocks found")
    else:
        plan = plan_region(layout)
        record["towers"] = tower_names(plan)
        unit_ids = number(plan).unit_ids
        for stack in stacks:
            ids = [unit_ids[u] for u in stack.units]
            if any(b <= a for a, b in zip(ids, ids[1:])):
                problems.append(f"blocks of {stack.path} share ids")
        in_block = {n for n in names if any(n.startswith(p + ".") for u in unit_ids for p in u)}
        head = layer_map.num_layers - 1
        loose = collections.defaultdict(list)
        for name in names:
            if name not in in_block and name in layer_map.ids:
                i = layer_map.ids[name]
                loose["stem" if i == 0 else "head" if i == head else "beside a block"].append(name)
        record["outside_blocks"] = {k: dict(count=len(v), names=v) for k, v in loose.items()}
        record["block_share"] = round(1 - sum(len(v) for v in loose.values()) / max(len(names), 1), 3)
    record["mapped"] = not problems
    record["problems"] = problems
    return record


class Timeout(Exception):
    pass


def forward_check(types: list[str] | None, timeout: int) -> list[dict]:
    """The ``--forward`` records: tiny models on the CPU checked against a real forward pass."""
    import transformers

    from hf_timm_layerdecay import layer_ids
    from hf_timm_layerdecay.adapters.transformers.layout import find_layout
    from hf_timm_layerdecay.verify import forward_order_problems, tied_names

    _quiet()
    torch.set_num_threads(1)
    records = []
    for model_type, by_class in mapping_classes(types).items():
        for class_name, mappings in by_class.items():
            if not any(m in FORWARD_MAPPINGS for m in mappings):
                continue
            record = dict(model_type=model_type, cls=class_name, mappings=mappings, created=False)
            signal.alarm(timeout)
            try:
                with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
                    default = transformers.AutoConfig.for_model(model_type)
                    config = type(default).from_dict(tiny(shrink(default.to_dict(), 2)))
                    torch.manual_seed(0)
                    model = getattr(transformers, class_name)._from_config(config).eval()
                    vocab = getattr(config.get_text_config(), "vocab_size", None) or 100
                    input_ids = torch.randint(3, min(vocab, 100), (1, 8), generator=torch.Generator().manual_seed(0))
                    forward = lambda m: m(input_ids=input_ids)  # noqa: E731
                    with torch.no_grad():
                        forward(model)
                record["created"] = True
                # encoder-decoder models and towers: ids grow within each stack (the criterion)
                parts = tuple(r.path for r in find_layout(model).regions() if r.kind in ("encoder", "decoder", "tower"))
                ids = layer_ids(model)
                problems = forward_order_problems(model, ids, forward, parts or None, exempt=tied_names(model))
                record.update(mapped=not problems, problems=problems[:5])
            except Timeout:
                record["error"] = f"timeout after {timeout}s"
            except Exception as error:  # noqa: BLE001 - a model that cannot be built or run tiny
                message = f"{type(error).__name__}: {_one_line(error)}"
                if record["created"]:
                    record.update(mapped=False, problems=[f"adapter raised {message}"])
                else:
                    record["error"] = message
            finally:
                signal.alarm(0)
            records.append(record)
        logger.info("%s", model_type)
    return records


def summarize_forward(records: list[dict]) -> str:
    """The markdown summary of ``--forward``."""
    created = [r for r in records if r.get("created")]
    ok = [r for r in created if r.get("mapped")]
    types = {r["model_type"] for r in created}
    ok_types = {t for t in types if all(r.get("mapped") for r in created if r["model_type"] == t)}
    lines = [
        f"- classes with a causal-LM or sequence-classification head: **{len(records)}**; built and run tiny on "
        f"the CPU: **{len(created)}** ({len(types)} model types); ids never go down along the forward pass: "
        f"**{len(ok)}** (**{100 * len(ok) / max(len(created), 1):.1f}%**; {len(ok_types)} of {len(types)} types)",
    ]
    for r in created:
        if not r.get("mapped"):
            lines.append(f"- `{r['cls']}`: {'; '.join(str(p) for p in r.get('problems', []))[:300]}")
    return "\n".join(lines) + "\n"


def _quiet() -> None:
    import transformers

    transformers.logging.set_verbosity_error()
    warnings.filterwarnings("ignore")
    logging.getLogger("hf_timm_layerdecay").setLevel(logging.ERROR)

    def on_alarm(signum, frame):
        raise Timeout()

    signal.signal(signal.SIGALRM, on_alarm)


def run(types: list[str] | None, layers: int, timeout: int) -> list[dict]:
    _quiet()
    records = []
    classes = mapping_classes(types)
    for k, (model_type, by_class) in enumerate(classes.items()):
        for class_name, mappings in by_class.items():
            record = dict(model_type=model_type, cls=class_name, mappings=mappings)
            start = time.time()
            signal.alarm(timeout)
            try:
                with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
                    model, shrunk = build(model_type, class_name, layers)
                record.update(created=True, shrunk=shrunk)
                try:
                    record.update(inspect_model(model, mappings != ["MODEL"]))
                except Timeout:
                    raise
                except Exception as error:  # noqa: BLE001 - an adapter failure is a result
                    record.update(mapped=False, problems=[f"adapter raised {type(error).__name__}: {error}"])
                    record["traceback"] = traceback.format_exc(limit=-3)
            except Timeout:
                record.setdefault("created", False)
                record.update(mapped=False, problems=[f"timeout after {timeout}s"])
            except Exception as error:  # noqa: BLE001 - a model that cannot be built here
                record.update(created=False, error=_one_line(error, 200))
            finally:
                signal.alarm(0)
            record["seconds"] = round(time.time() - start, 2)
            records.append(record)
        logger.info("%d/%d %s", k + 1, len(classes), model_type)
    return records


CATEGORIES = [  # mapping prefix -> category of the summary
    ("MODEL_FOR_CAUSAL_LM", "causal LM"),
    ("MODEL_FOR_SEQUENCE_CLASSIFICATION", "sequence classification"),
    ("MODEL_FOR_IMAGE_CLASSIFICATION", "image classification"),
    ("MODEL_FOR_SEQ_TO_SEQ_CAUSAL_LM", "seq2seq LM"),
    ("MODEL_FOR_IMAGE_TEXT_TO_TEXT", "image-text-to-text"),
    ("MODEL", "base model"),
]


def summarize(records: list[dict]) -> str:
    """The markdown summary committed as docs/transformers_coverage.md (the sweep part)."""
    by_type = collections.defaultdict(list)
    for r in records:
        by_type[r["model_type"]].append(r)
    created_types = {t for t, rs in by_type.items() if any(r.get("created") for r in rs)}
    mapped_types = {t for t in created_types if all(r.get("mapped") for r in by_type[t] if r.get("created"))}
    created = [r for r in records if r.get("created")]
    mapped = [r for r in created if r.get("mapped")]
    lines = [
        f"- model types in the auto mappings: **{len(by_type)}**; instantiated on the meta device: "
        f"**{len(created_types)}**; mapped (every class of the type): **{len(mapped_types)}** "
        f"(**{100 * len(mapped_types) / max(len(created_types), 1):.1f}%** of the instantiable types)",
        f"- model classes (base models and task heads): **{len(records)}**; instantiated: **{len(created)}**; "
        f"mapped: **{len(mapped)}** (**{100 * len(mapped) / max(len(created), 1):.1f}%**)",
    ]
    stacks = collections.Counter(min(len(r.get("stacks", [])), 3) for r in mapped)
    lines.append(
        "- stacks per mapped class: "
        + ", ".join(f"{'3 or more' if k == 3 else k}: {v}" for k, v in sorted(stacks.items()))
    )
    towers = sum(1 for r in mapped if r.get("towers"))
    encdec = sum(1 for r in mapped if any(x.startswith("encoder:") for x in r.get("regions", [])))
    lines.append(f"- with towers side by side: {towers} classes; with an encoder and a decoder: {encdec} classes")
    share = sorted(r["block_share"] for r in mapped if "block_share" in r)
    if share:
        lines.append(f"- median share of parameter tensors inside blocks: {share[len(share) // 2]:.0%}")
    where = collections.Counter()
    for r in mapped:
        for k, v in r.get("outside_blocks", {}).items():
            where[k] += v["count"]
    lines.append(
        "- parameter tensors outside every block, over all mapped classes: "
        + ", ".join(f"{k} {v}" for k, v in sorted(where.items()))
    )
    lines += ["", "| category (mapping) | classes | instantiated | mapped |", "| --- | --- | --- | --- |"]
    for prefix, label in CATEGORIES:
        rows = [r for r in records if prefix in r["mappings"]]
        ok = [r for r in rows if r.get("created")]
        lines.append(f"| {label} (`{prefix}`) | {len(rows)} | {len(ok)} | {sum(1 for r in ok if r.get('mapped'))} |")
    lines += ["", "Not mapped (instantiated, but some class of the type is not mapped):", ""]
    for t in sorted(created_types - mapped_types):
        bad = [r for r in by_type[t] if r.get("created") and not r.get("mapped")]
        reasons = sorted({p for r in bad for p in r.get("problems", [])})
        classes = ", ".join(r["cls"] for r in bad[:3]) + (", ..." if len(bad) > 3 else "")
        lines.append(f"- `{t}` ({classes}): {'; '.join(reasons)[:300]}")
    lines += ["", "Not instantiable here (the first class's error; the default config does not build here):", ""]
    for t in sorted(set(by_type) - created_types):
        lines.append(f"- `{t}`: {' '.join(by_type[t][0].get('error', '?').split())[:160]}")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--types", nargs="*", help="model types to sweep (default: all)")
    parser.add_argument("--layers", type=int, default=4, help="shrink every layer count to this (default 4)")
    parser.add_argument("--timeout", type=int, default=120, help="seconds per model class (default 120)")
    parser.add_argument("--json", type=Path, default=Path("/tmp/transformers_zoo.json"), help="per-class records")
    parser.add_argument(
        "--summary", type=Path,
        help="write the markdown summary here; into a file with <!-- sweep-summary:start/end --> "
        "(or forward-summary) markers, only between them (default: print it)",
    )
    parser.add_argument(
        "--forward", action="store_true", help="check ids against a real forward pass of tiny CPU models"
    )
    parser.add_argument("--from-json", action="store_true", help="summarize an existing --json, do not sweep")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.from_json:
        records = json.loads(args.json.read_text())
    else:
        if args.forward:
            records = forward_check(args.types, args.timeout)
        else:
            records = run(args.types, args.layers, args.timeout)
        args.json.write_text(json.dumps(records, indent=1))
        logger.info("records: %s", args.json)
    summary = summarize_forward(records) if args.forward else summarize(records)
    if args.summary:
        write_summary(args.summary, summary, "forward-summary" if args.forward else "sweep-summary")
    else:
        print(summary)
    return 0


def write_summary(path: Path, summary: str, marker: str) -> None:
    """Write ``summary`` to ``path``; in a file with the ``<!-- marker:start/end -->`` markers,
    only between them (the rest of docs/transformers_coverage.md is written by hand)."""
    start, end = f"<!-- {marker}:start -->", f"<!-- {marker}:end -->"
    text = path.read_text() if path.exists() else ""
    if start in text and end in text:
        head, rest = text.split(start, 1)
        text = f"{head}{start}\n{summary}{end}{rest.split(end, 1)[1]}"
    else:
        text = summary
    path.write_text(text)


if __name__ == "__main__":
    sys.exit(main())
