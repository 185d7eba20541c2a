"""Layer ids from the module tree of any ``nn.Module``.

Nearly every deep network is "stem, a sequence of repeated blocks, head". This module finds the
repeated blocks from the module hierarchy alone and numbers them:

1. A *stack* is a container (``ModuleList``, ``Sequential``, ``ModuleDict``) whose
   parameter-holding children are all composite (they have parameter-holding submodules) and at
   least two of them share a class; a ``ModuleList`` holding a single block is a stack too (a
   model configured with one layer). Consecutive sibling attributes of one class that are
   themselves blocks of blocks or stacks (ResNet's ``layer1..4``, RegNet's ``s1..s4``) form a
   stack as well.
2. Sibling ``ModuleList`` s of equal length where one or more are much smaller than the largest
   run *index by index*: ``downsample_layers[i]`` before ``stages[i]`` (official ConvNeXt),
   ``layer_norm1[i]`` beside ``attentions[i]`` and ``ffns[i]`` (XLM).
3. A block that is mostly (by parameter count) a stack of blocks, itself or through a direct
   child (a Swin or ConvNeXt stage: a downsample plus a list of blocks), is split into those
   blocks, recursively.
4. A stack far smaller than the largest one (a conv stem written as a ``Sequential`` of
   conv-norm units, a feature-encoder front end, a detection neck) is not part of the trunk.
5. Blocks get ids ``1..N`` in the order they run: the order in which the ``forward`` source of
   each module calls its children (:mod:`.run_order`; registration order where the source cannot
   be read, with a note), items of containers in registration order, with the index-by-index
   interleaving of rule 2. Parameters outside every block go to 0 when they run before the first
   block (stem, embeddings, tokens), to ``N + 1`` after the last one (final norm, pooler, head),
   and in between to the neighbouring block they share the longer module path with (a stage's
   downsample joins the stage's first block, an encoder's final norm its last block; on a tie,
   the next block).

The frame always has ``N + 2`` ids, with or without stem and head parameters, so a model built
without a classifier keeps the scales it has with one. A model without any stack (a plain MLP)
gets one id per parameter-owning module, in the order they run. A module used under several
paths (weight sharing) has one id, and the map says so in its notes.
"""

from __future__ import annotations

import functools
from collections import Counter, defaultdict
from typing import Callable, Iterator, Optional, Union

from torch import nn

from ..core.layer_map import LayerMap
from .paths import interleave, joins_previous
from .run_order import first_positions, reads_forward, reported_run_order
from .tree import CONTAINERS, holds_most
from .index import ModelIndex, as_index

#: A stack holding less than this share of the largest stack's elements is not trunk.
MIN_STACK_SHARE = 0.05
#: Of equal-length sibling lists, one this much smaller than the largest is a per-index companion.
_COMPANION_SHARE = 0.25

Unit = tuple[str, ...]  # module paths that together form one block
Child = tuple[str, nn.Module]


def structural_layer_map(model: Union[nn.Module, ModelIndex], granularity: str = "block") -> LayerMap:
    """Layer ids for every parameter of a model (or of the model of an index) from its module
    hierarchy alone.

    With ``granularity="stage"`` the members of the outermost stacks are not split (rule 3), so
    a hierarchical model gets one id per stage; models without stages are unchanged.

    Example:
        >>> from torch import nn
        >>> class Block(nn.Module):
        ...     def __init__(self):
        ...         super().__init__()
        ...         self.fc1, self.fc2 = nn.Linear(4, 4), nn.Linear(4, 4)
        >>> class Net(nn.Module):
        ...     def __init__(self):
        ...         super().__init__()
        ...         self.embed = nn.Linear(4, 4)
        ...         self.blocks = nn.ModuleList(Block() for _ in range(2))
        ...         self.head = nn.Linear(4, 2)
        >>> lm = structural_layer_map(Net())
        >>> {name: lm.ids[name] for name in ["embed.weight", "blocks.0.fc2.bias", "blocks.1.fc1.weight", "head.bias"]}
        {'embed.weight': 0, 'blocks.0.fc2.bias': 1, 'blocks.1.fc1.weight': 2, 'head.bias': 3}
        >>> lm.num_layers
        4
    """
    tree = ModuleTree(as_index(model), split_stages=granularity == "block")
    stacks = tree.walk(tree.model, "")
    notes = list(tree.shared_notes())
    sizes = [tree.size(stack) for stack in stacks]
    units = [unit for stack, size in zip(stacks, sizes) if size >= MIN_STACK_SHARE * max(sizes) for unit in stack]
    order = tree.execution_order()
    notes += tree.unread_notes()
    if not units:
        return _module_order_map(tree.names, order, notes)
    first = first_positions(order)
    units.sort(key=lambda unit: min(first[path] for path in unit))
    ids = _number(order, units)
    total = tree.numel[""]
    covered = sum(tree.numel[p] for unit in units for p in unit)
    if total and not holds_most(covered, total):
        notes.append(
            f"the {len(units)} repeated blocks found hold only {covered / total:.0%} of the parameters; "
            "the rest is split between the stem (id 0) and the head"
        )
    return LayerMap({name: ids[name] for name in tree.names}, len(units) + 2, tuple(notes))


class ModuleTree:
    """The module tree with parameter counts below every module path, computed once.

    Paths are counted with the names ``named_parameters()`` reports, so a module reachable under
    two paths (shared) has parameters only under its first path and is skipped at the others.
    """

    def __init__(self, index: ModelIndex, split_stages: bool = True) -> None:
        self.model = index.model
        self.split_stages = split_stages
        self._walk = index.found
        self.names: list[str] = self._walk.names
        self.count = self._added_up(lambda param: 1)
        self.interleaved: list[list[str]] = []  # element paths of aligned lists, in run order
        self._children: dict[str, list[Child]] = {}

    @functools.cached_property
    def numel(self) -> dict[str, int]:
        """Elements below every module path (computed when first asked: many models never do)."""
        return self._added_up(lambda param: param.numel())

    def _added_up(self, measure: Callable[[nn.Parameter], int]) -> dict[str, int]:
        """``measure`` of the parameters below every module path (reported names only)."""
        totals: dict[str, int] = defaultdict(int)
        for name, param in self._walk.named:  # each module's own parameters ...
            totals[name.rpartition(".")[0]] += measure(param)
        for path in reversed(self._walk.modules):  # ... added up into its ancestors, innermost first
            if path and path in totals:
                totals[path.rpartition(".")[0]] += totals[path]
        return totals

    def size(self, stack: list[Unit]) -> int:
        return sum(self.numel[p] for unit in stack for p in unit)

    def children(self, module: nn.Module, path: str) -> list[Child]:
        """The parameter-holding children of ``module`` (the module at ``path``), in registration
        order. Cached by path: the rules ask it many times of the same modules."""
        found = self._children.get(path)
        if found is None:
            prefix = path + "." if path else ""
            found = self._children[path] = [
                (prefix + key, child)
                for key, child in module._modules.items()
                if child is not None and self.count.get(prefix + key, 0)
            ]
        return found

    def composite(self, path: str, module: nn.Module) -> bool:
        """A module with parameter-holding submodules, unless it wraps a single layer
        (PEFT's LoRA layers keep the wrapped layer as ``base_layer``)."""
        if isinstance(module._modules.get("base_layer"), nn.Module):  # not getattr: far slower on a miss
            return False
        return bool(self.children(module, path))

    def is_stack(self, path: str, module: nn.Module) -> bool:
        if not isinstance(module, CONTAINERS):
            return False
        children = self.children(module, path)
        if not children or not all(self.composite(p, c) for p, c in children):
            return False
        most_common = Counter(type(c) for _, c in children).most_common(1)[0][1]
        return most_common >= 2 or (isinstance(module, nn.ModuleList) and len(children) == 1)

    def run_member(self, path: str, module: nn.Module, in_container: bool) -> bool:
        """Can this child be one of a run of sibling blocks?

        Items of a container are in sequence by construction: any composite item qualifies.
        Attributes are weaker evidence: a member must be a stack (if it is a plain container)
        or a block of blocks, so that two conv-norm pairs side by side inside a block are not
        taken for blocks.
        """
        if in_container:
            return self.composite(path, module)
        if isinstance(module, CONTAINERS):
            return self.is_stack(path, module)
        return any(self.composite(p, c) for p, c in self.children(module, path))

    def runs(self, children: list[Child], in_container: bool = False) -> list[list[Child]]:
        """Maximal runs (length >= 2) of consecutive run members of one kind."""
        runs, current = [], []
        for path, child in children:
            if not self.run_member(path, child, in_container):
                current = _close(runs, current)
                continue
            if current and self.kind(path, child) != self.kind(*current[-1]):
                current = _close(runs, current)
            current.append((path, child))
        _close(runs, current)
        return runs

    def aligned_lists(self, children: list[Child]) -> list[list[Child]]:
        """Groups of sibling ModuleLists of equal length that run index by index.

        Equal length alone does not mean that (CoaT's four stages, an encoder and a decoder of
        equal depth run one after the other). The sign is a companion: a list of a different
        kind of item (per-stage downsamples, per-layer norms) much smaller than a list of blocks.
        """
        by_length: dict[int, list[Child]] = defaultdict(list)
        for path, child in children:
            if isinstance(child, nn.ModuleList) and len(child) >= 2:
                by_length[len(child)].append((path, child))
        groups = []
        for lists in by_length.values():
            stacks = [(p, c) for p, c in lists if self.is_stack(p, c)]
            if len(lists) < 2 or not stacks:
                continue
            main_path, main = max(stacks, key=lambda pc: self.numel[pc[0]])
            main_kind = self.item_kind(main_path, main)
            if any(
                self.numel[p] < _COMPANION_SHARE * self.numel[main_path] and self.item_kind(p, c) != main_kind
                for p, c in lists
            ):
                groups.append(lists)
        return groups

    def item_kind(self, path: str, items: nn.ModuleList) -> set:
        """What a list holds: the classes of its items, looking inside plain containers."""
        return {self.kind(p, c) for p, c in self.children(items, path)}

    def kind(self, path: str, module: nn.Module) -> object:
        """The class of a module; for a plain container, its class and what it holds."""
        if isinstance(module, CONTAINERS):
            return type(module), frozenset(self.kind(p, c) for p, c in self.children(module, path))
        return type(module)

    def walk(self, module: nn.Module, path: str) -> list[list[Unit]]:
        """The stacks below a module that is not inside a block, in order, each a list of units."""
        children = self.children(module, path)
        if self.is_stack(path, module):
            return [[unit for p, c in children for unit in self.expand(c, p)]]
        stacks_at: dict[str, list[Unit]] = {}
        taken: set[str] = set()
        for lists in self.aligned_lists(children):
            stacks_at[lists[0][0]] = self.aligned_units(lists)
            taken.update(p for p, _ in lists)
        for run in self.runs([c for c in children if c[0] not in taken], isinstance(module, CONTAINERS)):
            stacks_at[run[0][0]] = [unit for p, c in run for unit in self.expand(c, p)]
            taken.update(p for p, _ in run)
        stacks: list[list[Unit]] = []
        for p, c in children:
            if p in stacks_at:
                stacks.append(stacks_at[p])
            elif p not in taken:
                stacks += self.walk(c, p)
        return stacks

    def aligned_units(self, lists: list[Child]) -> list[Unit]:
        """Units of index-aligned lists. With one large list its items are expanded into blocks
        and the companions' items become loose parameters that run just before or after them;
        with several large lists (XLM's attentions and ffns) item ``i`` of every list is one unit."""
        largest = max(self.numel[p] for p, _ in lists)
        large = [p for p, _ in lists if self.numel[p] >= _COMPANION_SHARE * largest]
        rows = list(zip(*([(f"{p}.{key}", item) for key, item in c._modules.items()] for p, c in lists)))
        self.interleaved.append([path for row in rows for path, _ in row])
        units: list[Unit] = []
        for row in rows:
            present = [(path, item) for path, item in row if self.count.get(path)]
            if len(large) == 1:
                units += [u for path, item in present if path.startswith(large[0] + ".") for u in self.expand(item, path)]
            elif present:
                units.append(tuple(path for path, _ in present))
        return units

    def expand(self, block: nn.Module, path: str) -> list[Unit]:
        """A block as one unit, or split into its inner blocks when they hold most of it."""
        if not self.split_stages:
            return [(path,)]
        children = self.children(block, path)
        if self.is_stack(path, block):
            return [unit for p, c in children for unit in self.expand(c, p)]
        inner: dict[str, list[Child]] = {}
        for p, c in children:
            if self.is_stack(p, c):
                inner[p] = self.children(c, p)
        runs = self.runs(children)
        if len(runs) == 1 and len(runs[0]) == len(children):  # the block is only a row of blocks
            inner.update((p, [(p, c)]) for p, c in runs[0])
        if not inner or not holds_most(sum(self.numel[p] for p in inner), self.numel[path]):
            return [(path,)]
        return [unit for p, _ in children if p in inner for q, c in inner[p] for unit in self.expand(c, q)]

    def execution_order(self) -> list[str]:
        """Parameter names (as ``named_parameters()`` reports them) in the order they run
        (:func:`.run_order.run_order`: children in the order ``forward`` calls them, a module's own
        parameters before its children), with the items of index-aligned lists interleaved
        (``a.0``, ``b.0``, ``a.1``, ``b.1``, ...)."""
        return interleave(reported_run_order(self.model, self.names), self.interleaved)

    def unread_notes(self) -> list[str]:
        """A note per class whose ``forward`` source could not be read although the order of its
        parameter-holding children matters: they keep registration order."""
        unread = sorted({
            type(module).__name__
            for path, module in self._walk.modules.items()
            if not reads_forward(module) and len(self.children(module, path)) > 1
        })
        if not unread:
            return []
        return [f"no forward source for {', '.join(unread)}: the children of these modules are taken to run "
                "in registration order"]

    def shared_notes(self) -> Iterator[str]:
        """One note per parameter-holding module that appears under more than one path."""
        paths: dict[int, list[str]] = defaultdict(list)
        for path, module in self._walk.modules.items():
            paths[id(module)].append(path)
        reported: list[str] = []
        for found in paths.values():
            owner = found[0]
            if len(found) < 2 or not self.count.get(owner) or any(owner.startswith(r + ".") for r in reported):
                continue
            reported.append(owner)
            also = ", ".join(repr(p) for p in found[1:4]) + (", ..." if len(found) > 4 else "")
            yield f"module {owner!r} is shared (also used as {also}); its parameters have the id of {owner!r}"


def _number(names: list[str], units: list[Unit]) -> dict[str, int]:
    """Blocks get 1..N; parameters outside blocks go to the stem, the head or a neighbour.

    ``names`` must be in execution order: "before" and "after" are read from it.
    """
    unit_of = {path: index for index, unit in enumerate(units) for path in unit}
    outermost: dict[str, Optional[int]] = {"": unit_of.get("")}  # module path -> outermost unit holding it

    def unit_holding(path: str) -> Optional[int]:
        found = outermost.get(path, _UNKNOWN)
        if found is _UNKNOWN:
            found = unit_holding(path.rpartition(".")[0])
            if found is None:
                found = unit_of.get(path)
            outermost[path] = found
        return found

    assigned = [unit_holding(name.rpartition(".")[0]) for name in names]
    prev_of = _last_seen(assigned)
    next_of = _last_seen(assigned[::-1])[::-1]
    head = len(units) + 1
    ids = {}
    for k, name in enumerate(names):
        if assigned[k] is not None:
            ids[name] = assigned[k] + 1
        elif prev_of[k] is None:
            ids[name] = 0
        elif next_of[k] is None:
            ids[name] = head
        else:
            ids[name] = (prev_of[k] if joins_previous(name, units[prev_of[k]], units[next_of[k]]) else next_of[k]) + 1
    return ids


_UNKNOWN = object()


def _close(runs: list, current: list) -> list:
    """Keep ``current`` as a run if it is long enough; return a fresh empty run."""
    if len(current) >= 2:
        runs.append(current)
    return []


def _last_seen(values: list) -> list:
    """For each position, the last non-None value strictly before it."""
    out, last = [], None
    for value in values:
        out.append(last)
        if value is not None:
            last = value
    return out


def _module_order_map(names: list[str], order: list[str], notes: list[str]) -> LayerMap:
    """No stack anywhere: every module that owns parameters is a layer, in the order they run."""
    ids: dict[str, int] = {}
    owners: dict[str, int] = {}
    for name in order:
        ids[name] = owners.setdefault(name.rpartition(".")[0], len(owners))
    if len(owners) > 1:
        notes.append(f"no repeated blocks found; one layer id per parameter-owning module ({len(owners)} ids)")
    elif ids:
        notes.append("the model has a single parameter-owning module: layer-wise decay has no effect")
    return LayerMap.from_ids({name: ids[name] for name in names}, tuple(notes))
