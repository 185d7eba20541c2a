"""Adapter for Hugging Face transformers models (any ``PreTrainedModel``, any task head), bare
or wrapped by PEFT.

Layer ids come from the model's own structure, for every architecture and without per-model
tables: :mod:`.layout` finds the block stacks (``GradientCheckpointingLayer`` s) and how the
parts of the model relate (towers, encoder and decoder, backbone), :mod:`.numbering` numbers
them; this module adds what needs the model as a whole:

* **tied weights**: an output projection tied to the input embedding (``lm_head.weight`` *is*
  ``model.embed_tokens.weight``) is one parameter, reported under the embedding's name. It gets
  the head's id by default (``AutoStrategy(tied_head="head")``): with the embedding's id the
  output layer of a language model barely adapts (measured in ``docs/transformers_coverage.md``).
  ``tied_head="embedding"`` keeps it at 0;
* **shared blocks**: a block reused across depths (ALBERT's layer group, Zamba's shared
  transformer) is one id, with a note;
* **PEFT**: a ``PeftModel`` around a transformers model is seen through; LoRA weights sit inside
  the block they adapt and get its id, ``modules_to_save`` copies the id of the module they copy.
  Frozen base weights keep their ids (they fix the frame) and are left out of the groups by the
  core. Parameters PEFT adds outside the model (prompt-tuning embeddings) are input-side: id 0.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from typing import Optional, Union

from torch import nn

from ...core.layer_map import LayerMap
from .. import structural
from ..options import AutoStrategy
from ..run_order import loops_over_layer_count
from ..index import ModelIndex, as_index
from ..tree import first_path
from .layout import Region, find_layout, warn_unnumbered_block_lists
from .numbering import Numbering, Placer, number, pair_encoders, plan_region, tower_matches, tower_names

logger = logging.getLogger(__name__)

#: The AutoStrategy options this adapter reads besides granularity.
OPTIONS = frozenset({"encoder_decoder", "tower", "tied_head"})


def applies(model: Union[nn.Module, ModelIndex]) -> bool:
    """Whether the model (or the model of an index) is a transformers model, or a PEFT model around one."""
    return _find_transformers_model(model.model if isinstance(model, ModelIndex) else model) is not None


def layer_map(model: Union[nn.Module, ModelIndex], options: AutoStrategy = AutoStrategy()) -> LayerMap:
    """Layer ids for every parameter of a transformers model (or a PEFT model around one), given
    as a model or as its :class:`~..index.ModelIndex`.

    Example:
        >>> from transformers import BertConfig, BertForSequenceClassification
        >>> config = BertConfig(
        ...     hidden_size=8, num_hidden_layers=2, num_attention_heads=2, intermediate_size=8, vocab_size=10
        ... )
        >>> ids = layer_map(BertForSequenceClassification(config)).ids
        >>> [ids[n] for n in ("bert.embeddings.word_embeddings.weight", "bert.encoder.layer.1.output.dense.bias")]
        [0, 2]
        >>> ids["classifier.weight"]  # the head
        3
    """
    index = as_index(model)
    model = index.model
    found = _find_transformers_model(model)
    if found is None:
        raise TypeError(f"{type(model).__name__} is not a transformers model and holds none")
    prefix, inner = found
    inner_map = _transformers_layer_map(index.of(inner), options)
    if not prefix:
        return inner_map
    ids = {prefix + name: layer_id for name, layer_id in inner_map.ids.items()}
    outside = [name for name in index.names if name not in ids]
    ids.update((name, 0) for name in outside)
    notes = inner_map.notes
    if outside:
        notes += (
            f"{len(outside)} parameter(s) added outside the model by {type(model).__name__} "
            f"(e.g. {outside[0]!r}) are input-side: id 0",
        )
    regions = {prefix + path: span for path, span in inner_map.regions.items()}
    return LayerMap(ids, inner_map.num_layers, notes, regions)


def _find_transformers_model(model: nn.Module) -> Optional[tuple[str, nn.Module]]:
    """``(prefix, model)`` of the transformers model: the model itself, or the base model of a
    PEFT wrapper (``PeftModel.get_base_model()``, a tuner's ``model``) with its path."""
    if _is_transformers(model):
        return "", model
    if not type(model).__module__.startswith("peft."):
        return None
    get_base_model = getattr(model, "get_base_model", None)
    base = get_base_model() if callable(get_base_model) else getattr(model, "model", None)
    if not isinstance(base, nn.Module) or not _is_transformers(base):
        return None
    path = first_path(model, base)
    return None if path is None else (path + ".", base)


def _is_transformers(model: nn.Module) -> bool:
    return type(model).__module__.startswith("transformers.")


def _transformers_layer_map(index: ModelIndex, options: AutoStrategy) -> LayerMap:
    model = index.model
    layout = find_layout(index, options.granularity)
    if not layout.has_units():
        fallback = structural.structural_layer_map(index, granularity=options.granularity)
        return LayerMap(fallback.ids, fallback.num_layers, fallback.notes)
    plan = plan_region(layout, options.encoder_decoder)
    towers = tower_names(plan)
    if options.tower is not None and not any(tower_matches(t, options.tower) for t in towers):
        available = ", ".join(repr(t) for t in towers) or "none: it has a single stack of blocks"
        raise ValueError(
            f"AutoStrategy(tower={options.tower!r}) names no tower of {type(model).__name__}; its towers: {available}"
        )
    numbering = number(plan, options.tower)
    regions = [r.path or "(model)" for r in layout.regions()]
    logger.debug("%s: %d blocks in %s", type(model).__name__, len(numbering.unit_ids), regions)
    placer = Placer(layout, numbering, layout.order, _output_embedding_paths(index), index.modules)
    ids, notes = _resolve_aliases(index, placer, options.tied_head)
    warn_unnumbered_block_lists(model, layout, ids)  # transformers 4.x only
    notes += _layout_notes(layout, numbering, towers, options)
    return LayerMap(ids, placer.head + 1, tuple(notes), _regions(layout, numbering))


def _regions(layout: Region, numbering: Numbering) -> dict[str, tuple[int, int]]:
    """Every part of the model with blocks of its own (towers, encoders, decoders, backbones,
    the blocks a tower-holding model runs itself) -> the span of its block ids, in run order."""
    regions = {region.path: numbering.spans[region.path] for region in layout.regions()
               if region.path and region.path in numbering.spans}
    regions.update((name, span) for name, span in numbering.towers.items() if name not in regions)
    return regions


def _resolve_aliases(index: ModelIndex, placer: Placer, tied_head: str) -> tuple[dict[str, int], list[str]]:
    """One id per parameter, also for parameters reachable under several names.

    A parameter used at the input (id below the head) and as the output projection (the head)
    is a tied head, placed by ``tied_head``; any other shared parameter has the id of its first
    use (the name ``named_parameters()`` reports).
    """
    aliases, named = index.found.aliases, index.named
    ids: dict[str, int] = {}
    notes: list[str] = []
    shared_owners: dict[str, list[str]] = defaultdict(list)
    for name, _ in named:
        names = aliases[name]
        if len(names) == 1:  # not shared: nearly every parameter
            ids[name] = placer.layer_id(name)
            continue
        alias_ids = {alias: placer.layer_id(alias) for alias in names}
        ids[name] = alias_ids[name]
        if len(set(alias_ids.values())) == 1:
            continue
        head_aliases = [a for a, i in alias_ids.items() if i == placer.head]
        if head_aliases and min(alias_ids.values()) < placer.head:
            low = min(alias_ids.values())
            ids[name] = placer.head if tied_head == "head" else low
            other = low if tied_head == "head" else placer.head
            notes.append(
                f"{head_aliases[0]!r} is tied to {name!r} (one parameter): id {ids[name]} "
                f"(tied_head={tied_head!r}; the other choice gives {other})"
            )
        else:
            owner = name.rsplit(".", 1)[0]
            shared_owners[_block_path(owner, placer)] += [a.rsplit(".", 1)[0] for a in names if a != name]
    for owner, others in shared_owners.items():
        others = sorted({_block_path(o, placer) for o in others})
        also = ", ".join(repr(o) for o in others[:3]) + (", ..." if len(others) > 3 else "")
        notes.append(f"{owner!r} is shared (also run as {also}): one id, that of its first use ({_id_of(owner, ids)})")
    return ids, notes


def _block_path(owner: str, placer: Placer) -> str:
    """The shared module's path up to the child of the block it sits in (``layers.2.shared_transf``)."""
    unit = placer.unit_of(owner + ".x")
    if unit is None:
        return owner
    for path in unit:
        if owner.startswith(path + "."):
            rest = owner[len(path) + 1 :].split(".")
            return f"{path}.{rest[0]}"
    return owner


def _id_of(owner: str, ids: dict[str, int]) -> int:
    return next(i for name, i in ids.items() if name.startswith(owner + "."))


def _layout_notes(layout: Region, numbering: Numbering, towers: list[str], options: AutoStrategy) -> list[str]:
    notes = []
    spans = numbering.spans
    for region in layout.regions():
        stacks = [e for e in region.elements if not isinstance(e, Region)]
        declared = getattr(getattr(region.module, "config", None), "num_hidden_layers", None)
        if len(stacks) != 1 or not isinstance(declared, int) or not 0 < len(stacks[0].units) < declared:
            continue
        # fewer blocks than layers, and a forward that loops over the layer count: blocks are reused
        holders = [m for p, m in region.module.named_modules() if stacks[0].path.startswith(_join(region.path, p))]
        if any(loops_over_layer_count(type(m)) for m in holders):
            where = f"{region.path!r}" if region.path else type(region.module).__name__
            notes.append(
                f"{where} runs num_hidden_layers={declared} layers through {len(stacks[0].units)} block(s) "
                "(shared weights): each shared block is one id"
            )
    if towers:
        described = ", ".join(f"{t!r} ids {a + 1}-{b}" for t, (a, b) in numbering.towers.items())
        how = f"stretched onto {options.tower!r}" if options.tower else "each by its own depth, from id 1"
        notes.append(f"towers side by side ({how}): {described}")
    for region in layout.regions():
        for encoder_id, decoder in pair_encoders(region.elements).items():
            encoder = next(e for e in region.elements if id(e) == encoder_id)
            (a, b), (c, d) = spans[encoder.path], spans[decoder.path]
            notes.append(
                f"encoder {encoder.path!r} ids {a + 1}-{b}, decoder {decoder.path!r} ids {c + 1}-{d} "
                f"(encoder_decoder={options.encoder_decoder!r})"
            )
    return notes


def _join(prefix: str, path: str) -> str:
    return f"{prefix}.{path}" if prefix and path else prefix or path


def _output_embedding_paths(index: ModelIndex) -> set[str]:
    """Module paths of the output embeddings (the language-model head), which always run last."""
    try:
        head = index.model.get_output_embeddings()
    except Exception:  # noqa: BLE001 - some models raise NotImplementedError or need arguments
        return set()
    if not isinstance(head, nn.Module):
        return set()
    return {path for path, module in index.modules.items() if module is head}
