"""A timm model with ``group_matcher()``: timm's groups, refined into a map that follows the
forward pass (steps 1-6 of the package docstring); the module structure for the others."""

from __future__ import annotations

import logging
import math
import re
from collections import Counter, defaultdict
from typing import Optional

from torch import nn

from ..._compat import fix_timm_group_matcher
from ...core.layer_map import LayerMap
from ..paths import joins_previous
from ..tree import CONTAINERS, holds_most
from ..structural import structural_layer_map
from ..index import ModelIndex
from .identify import classifier_names, summarize
from .matching import group_ids
from .naming import is_position_or_token

logger = logging.getLogger(__name__)

#: A parameter name that no group_matcher pattern matches: it finds timm's "unmatched" group.
_UNMATCHED_PROBE = "\x00unmatched\x00"


def model_map(index: ModelIndex, granularity: str) -> LayerMap:
    """timm's grouping refined (a model with ``group_matcher()``), else the module structure."""
    if callable(getattr(index.model, "group_matcher", None)):
        return _matcher_map(index, granularity)
    return structural_fallback(index, granularity, f"{type(index.model).__name__} has no group_matcher()")


def _matcher_map(index: ModelIndex, granularity: str) -> LayerMap:
    model = index.model
    notes: list[str] = []
    aliases, named = index.found.aliases, index.named
    params = dict(named)
    probe_names = [a for names in aliases.values() for a in names] + [_UNMATCHED_PROBE]
    try:
        matcher = _group_matcher(model, granularity, notes)
        lid = group_ids(probe_names, matcher)
    except Exception as exc:  # noqa: BLE001 - a model's own grouping code may fail on a custom build
        logger.warning("%s.group_matcher() failed (%s); using the module structure", type(model).__name__, exc)
        return structural_fallback(index, granularity, f"{type(model).__name__}.group_matcher() failed ({exc})")
    unmatched_lid = lid[_UNMATCHED_PROBE]
    head = classifier_names(index)
    order = [name for name, _ in named if name not in head]

    keys: dict[str, Optional[float]] = {}
    for name in order:
        paths = aliases[name]
        found = lid[name] if len(paths) == 1 else _shared_lid(name, paths, lid, unmatched_lid)
        keys[name] = None if found == unmatched_lid else float(found)
    if all(key is None for key in keys.values()):
        return structural_fallback(index, granularity, f"{type(model).__name__}.group_matcher() matches none of its parameters")
    placed = _place_unmatched(order, keys)
    if placed:
        notes.append(_describe_placement(placed))
    notes += _shared_notes(aliases, keys)

    groups = _compact(keys)
    overlap = _overlapping_block_lists(model, params, groups)
    if overlap:
        return structural_fallback(
            index, granularity,
            f"timm's group_matcher puts blocks of {overlap[0]!r} and {overlap[1]!r} in the same groups although they "
            "run one list after the other",
        )
    if granularity == "block":
        groups = _split_stages(index.modules, params, order, groups, notes)
    num_layers = max(groups.values(), default=-1) + 2  # the head slot, with or without a classifier
    ids = {name: groups.get(name, num_layers - 1) for name, _ in named}
    return LayerMap(ids, num_layers, tuple(notes))


def structural_fallback(index: ModelIndex, granularity: str, reason: str) -> LayerMap:
    """The structural map, with the classifier last and a note saying why it is used."""
    structural = structural_layer_map(index, granularity=granularity)
    ids = head_last(dict(structural.ids), classifier_names(index), structural.num_layers)
    return LayerMap(ids, structural.num_layers, (f"{reason}; ids from the module structure", *structural.notes))


def _group_matcher(model: nn.Module, granularity: str, notes: list[str]):
    coarse = granularity == "stage"
    try:
        matcher = model.group_matcher(coarse=coarse)
    except (AssertionError, NotImplementedError) as exc:
        if not coarse:
            raise
        notes.append(f"{type(model).__name__}.group_matcher(coarse=True) is not available ({exc}); block groups used")
        matcher = model.group_matcher(coarse=False)
    matcher, note = fix_timm_group_matcher(model, matcher)  # what older timm releases get wrong
    if note:
        notes.append(note)
    return matcher


def _shared_lid(name: str, paths: list[str], lid: dict[str, int], unmatched_lid: int) -> int:
    """timm's group of a parameter, looking at every path it is reachable under.

    A module registered at a shallower path than all its other uses (CoaT's ``crpe1``, handed
    to the blocks that call it) runs first in the earliest of those blocks; otherwise (equal
    depths: blocks sharing weights) in the earliest path.
    """
    if len(paths) == 1:
        return lid[name]
    uses = paths
    depth = name.count(".")
    if all(p.count(".") > depth for p in paths[1:]):
        uses = paths[1:]
    matched = [lid[p] for p in uses if lid[p] != unmatched_lid]
    return min(matched) if matched else lid[name]


def _place_unmatched(order: list[str], keys: dict[str, Optional[float]]) -> dict[str, str]:
    """Give every unmatched parameter (key None) a key where it runs; return name -> where.

    ``order`` is ``named_parameters()`` order, which follows registration, which timm models
    follow when they run: parameters before every matched one are a stem of their own, those
    after every matched one join the head; in between, position embeddings and tokens join the
    first group (the stem), the others the neighbour they share the longer module path with (on
    a tie the next one, as a stage's downsample runs with the stage's first block). Parameters
    of the root module are listed before all others whatever their use: embeddings and tokens
    join the stem, the others (EfficientViM's head ``weights``) the head.
    """
    matched_positions = [k for k, n in enumerate(order) if keys[n] is not None]
    placed: dict[str, str] = {}
    if not matched_positions:
        return placed
    first, last = matched_positions[0], matched_positions[-1]
    upcoming = iter(matched_positions)
    next_position: Optional[int] = next(upcoming)
    previous: Optional[str] = None
    for k, name in enumerate(order):
        while next_position is not None and next_position < k:
            next_position = next(upcoming, None)
        if keys[name] is not None:
            previous = name
            continue
        if "." not in name:
            root_token = is_position_or_token(name)
            keys[name], placed[name] = (keys[order[first]], "stem") if root_token else (math.inf, "head")
        elif k > last:
            keys[name], placed[name] = math.inf, "head"
        elif k < first:
            keys[name], placed[name] = -1.0, "stem"
        elif is_position_or_token(name, anywhere=True):
            keys[name], placed[name] = keys[order[first]], "stem"
        else:
            after = order[next_position]
            closer = previous if joins_previous(name, [previous] if previous else [], [after]) else after
            keys[name], placed[name] = keys[closer], closer.rsplit(".", 1)[0]
    return placed


def _compact(keys: dict[str, float]) -> dict[str, int]:
    """Keys to ids ``0..K-1`` in key order; parameters keyed ``inf`` (after every block) are left
    out: they take the head slot."""
    ranks = {key: rank for rank, key in enumerate(sorted({k for k in keys.values() if k != math.inf}))}
    return {name: ranks[key] for name, key in keys.items() if key != math.inf}


def _overlapping_block_lists(
    model: nn.Module, params: dict[str, nn.Parameter], groups: dict[str, int]
) -> Optional[tuple[str, str]]:
    """Two top-level block lists that run one after the other but whose groups interleave.

    CaiT's matcher gives its two class-attention blocks (``blocks_token_only``) the ids of the
    last two self-attention blocks (``blocks``), although they run after all of them. The sign:
    a group holds a sizeable share (a quarter or more of its elements) of two lists, and the
    list registered second starts in an earlier group than the one where the first list ends.
    """
    lists = [name for name, child in model._modules.items() if isinstance(child, CONTAINERS)]
    if len(lists) < 2:
        return None
    tops = {(group, name.partition(".")[0]) for name, group in groups.items()}
    lists_per_group = Counter(group for group, top in tops if top in lists)
    if max(lists_per_group.values(), default=0) < 2:
        return None  # no group holds parameters of two lists: the usual case
    by_top: Counter = Counter()  # (group, top-level child) -> elements
    for name, group in groups.items():
        by_top[group, name.partition(".")[0]] += params[name].numel()
    sizes: dict[int, Counter] = defaultdict(Counter)
    totals: Counter = Counter()
    span: dict[str, list[int]] = {}
    for (group, top), size in by_top.items():
        totals[group] += size
        if top in lists:
            sizes[group][top] += size
            low, high = span.setdefault(top, [group, group])
            span[top] = [min(low, group), max(high, group)]
    for group, counts in sizes.items():
        big = sorted((top for top, size in counts.items() if size >= 0.25 * totals[group]), key=lists.index)
        for first, second in zip(big, big[1:]):
            if span[second][0] < span[first][1]:
                return first, second
    return None


def _split_stages(
    modules: dict[str, nn.Module], params: dict[str, nn.Parameter], order: list[str], groups: dict[str, int],
    notes: list[str],
) -> dict[str, int]:
    """Split the groups that are whole stages into their blocks.

    Some matchers (PVT-v2, CoAtNet/MaxViT, EfficientFormer, MViTv2, GCViT, ...) have only stage
    groups, also with ``coarse=False``. A group is a stage when at least half of its elements
    sit in two or more blocks of one ``blocks`` list (timm's name for a stage's blocks); it is
    split per block, and its other parameters (a downsample before, a norm after) join the
    block they are registered next to. The blocks themselves are never split further, so
    parallel branches and the layers inside a block keep one id. The first group, the stem, is
    never split: a hybrid ViT's patch embedding is a whole CNN and stays at id 0.
    """
    candidates = _groups_in_several_blocks(groups)
    if not candidates:
        return groups  # nothing to split: the usual case
    members: dict[int, list[str]] = defaultdict(list)
    for name in order:
        if name in groups:
            members[groups[name]].append(name)
    keys: dict[str, tuple[int, int]] = {}
    split = 0
    stem = min(members, default=None)
    list_items: dict[str, bool] = {}  # path -> is that module a container (shared by _block_of)
    for group, names in members.items():
        if group == stem or group not in candidates:
            keys.update((n, (group, 0)) for n in names)
            continue
        block_of = {n: _block_of(modules, n, list_items) for n in names}
        in_list: Counter = Counter()
        for name, block in block_of.items():
            if block is not None:
                in_list[block[0]] += params[name].numel()
        main = in_list.most_common(1)[0][0] if in_list else None
        blocks = list(dict.fromkeys(b for b in block_of.values() if b is not None and b[0] == main))
        if main is None or len(blocks) < 2 or not holds_most(in_list[main], sum(params[n].numel() for n in names)):
            keys.update((n, (group, 0)) for n in names)
            continue
        split += 1
        rank = {block: r for r, block in enumerate(blocks)}
        ranks = [rank.get(block_of[n]) for n in names]
        # A parameter outside the blocks joins the next block (a downsample runs before the
        # stage's first block) or, after the last block (a stage norm), the last one.
        upcoming = _next_seen(ranks)
        for name, own, following in zip(names, ranks, upcoming):
            block = own if own is not None else following if following is not None else len(blocks) - 1
            keys[name] = (group, block)
    ranked = {key: i for i, key in enumerate(sorted(set(keys.values())))}
    if split:
        notes.append(
            f"{split} of timm's groups are whole stages; split into their blocks: "
            f"{len(set(groups.values()))} -> {len(ranked)} ids below the head"
        )
    return {name: ranked[key] for name, key in keys.items()}


#: The innermost ``blocks.<i>.`` item on a parameter's path (``stages.1.blocks.2.``), or nothing:
#: one match per line of names joined by newlines.
_INNERMOST_BLOCK = re.compile(r"^(?:(?:[^\n]*\.)?blocks\.\d+\.)?", re.MULTILINE)


def _groups_in_several_blocks(groups: dict[str, int]) -> set[int]:
    """The groups whose parameters lie in two or more ``blocks.<i>`` items: only those can be
    stages. One regular-expression pass over all names instead of a :func:`_block_of` question
    per name (names under the same innermost item have the same :func:`_block_of`)."""
    items = _INNERMOST_BLOCK.findall("\n".join(groups))
    if len(items) != len(groups):  # a name with a newline in it: ask about every group
        return set(groups.values())
    spans = Counter(group for group, item in set(zip(groups.values(), items)) if item)
    return {group for group, count in spans.items() if count >= 2}


def _block_of(modules: dict[str, nn.Module], name: str, is_container: dict[str, bool]) -> Optional[tuple[str, str]]:
    """(path of the ``blocks`` list, index) of the block holding a parameter, or None.

    The innermost ``blocks.<i>`` on the path whose item is a block, not itself a list (CrossViT
    keeps the two branches of a block in a ``blocks`` list of lists). ``is_container`` caches,
    per item path, whether that item is itself a list.
    """
    parts = name.split(".")
    for k in range(len(parts) - 3, -1, -1):
        if parts[k] == "blocks" and parts[k + 1].isdigit():
            path = ".".join(parts[: k + 1])
            item = f"{path}.{parts[k + 1]}"
            if item not in is_container:
                is_container[item] = isinstance(modules[item], CONTAINERS)
            if not is_container[item]:
                return path, parts[k + 1]
    return None


def _next_seen(values: list) -> list:
    """For each position, the first non-None value at or after it."""
    out, upcoming = [], None
    for value in reversed(values):
        if value is not None:
            upcoming = value
        out.append(upcoming)
    return out[::-1]


def head_last(ids: dict[str, int], head: set[str], num_layers: int) -> dict[str, int]:
    """The classifier takes the last id of the frame."""
    return {name: num_layers - 1 if name in head else layer_id for name, layer_id in ids.items()}


def _describe_placement(placed: dict[str, str]) -> str:
    by_place: dict[str, list[str]] = defaultdict(list)
    for name, where in placed.items():
        by_place[where].append(name)
    parts = [f"{summarize(names)} -> {'with ' + where if where not in ('stem', 'head') else where}" for where, names in by_place.items()]
    return f"{len(placed)} parameter(s) that timm's group_matcher does not match, placed where they run: " + "; ".join(parts)


def _shared_notes(aliases: dict[str, list[str]], keys: dict[str, float]) -> list[str]:
    owners = sorted({name.rsplit(".", 1)[0] for name, paths in aliases.items() if len(paths) > 1 and name in keys})
    top = [o for o in owners if not any(o.startswith(p + ".") for p in owners if p != o)]
    return [f"module {o!r} is used under several paths; its parameters have the id of its first use inside the blocks" for o in top]
