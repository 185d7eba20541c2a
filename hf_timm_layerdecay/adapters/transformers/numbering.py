"""Layer ids from a layout (:mod:`.layout`): blocks numbered, everything else placed.

**Blocks.** A region numbers its elements one after another (a backbone, then an encoder, then a
decoder: the forward order). Towers run side by side: by default each tower numbers its blocks
by its own depth, all starting right after the embeddings (id 1); with
``AutoStrategy(tower=name)`` every tower is stretched onto that tower's depth, so that all of them
span the same ids from the embeddings to the head. An encoder and a decoder are numbered one after
the other (``encoder_decoder="sequential"``, the forward order) or each by its own depth
(``"parallel"``).

**Everything else** (a parameter in no block), by the order in which parameters are expected to
run (:func:`~.run_order.run_order`):

* the output embeddings (``get_output_embeddings()``, the language-model head) are the head,
  wherever they sit;
* embeddings are 0 wherever they sit, unless they run after the last block of their region:
  any module or parameter whose name contains ``embed`` (``embed_tokens``, ``embeddings``,
  ``rel_embeddings``, ``layernorm_embedding``, ``masked_spec_embed``, a decoder's positions);
* anything else by where it runs in the innermost region with blocks that holds it: before the
  region's first block -> the id the region starts at (0 for the model and its towers); after
  its last block -> the head when nothing of the model runs after the region (the model itself,
  its towers, a decoder: final norms, poolers, projections, task heads), else the region's last
  block (an encoder's final norm, before the decoder); between two blocks -> the neighbour it
  shares the longer module path with (on a tie the next one: a stage's downsample joins its
  stage, an input projection the block it feeds); between two towers (a vision-language
  projector, BLIP-2's query tokens) -> the head.

The head is one past the largest block id; the frame always includes it.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field
from typing import Mapping, Optional, Union

from torch import nn

from ..paths import joins_previous, parents
from .layout import Region, Stack, Unit

Plan = Union["Blocks", "Chain", "Side", "Scoped"]
#: Stands for the head's id until the largest block id is known.
HEAD = -1


@dataclass
class Blocks:
    """The blocks of one stack, in order."""

    path: str
    units: list[Unit]


@dataclass
class Chain:
    """Plans that run one after the other."""

    parts: list[Plan]


@dataclass
class Side:
    """Plans that run side by side: towers, or an encoder and a decoder in parallel mode."""

    members: list[tuple[str, Plan]]
    towers: bool


@dataclass
class Scoped:
    """A region's plan; numbering records where the region starts and ends."""

    region: Region
    plan: Plan


@dataclass
class Numbering:
    """Ids of the blocks, and where every region with blocks starts and ends."""

    unit_ids: dict[Unit, int] = field(default_factory=dict)
    spans: dict[str, tuple[int, int]] = field(default_factory=dict)
    #: region path -> id of what runs right after the region's last block (:data:`HEAD`: the head)
    after: dict[str, int] = field(default_factory=dict)
    #: region path -> {unit: name of its tower}, for the regions whose towers run side by side
    member_of: dict[str, dict[Unit, str]] = field(default_factory=dict)
    #: tower name -> (start, last id) of the tower
    towers: dict[str, tuple[int, int]] = field(default_factory=dict)


def plan_region(region: Region, encoder_decoder: str = "sequential") -> Scoped:
    """How the blocks of ``region`` are numbered: chained, or towers side by side."""
    chain: list[Plan] = []
    towers: list[tuple[str, Plan]] = []
    elements = region.elements
    partner = pair_encoders(elements)
    paired = {id(decoder) for decoder in partner.values()}
    for element in elements:
        if isinstance(element, Stack):
            chain.append(Blocks(element.path, element.units))
        elif element.kind == "tower":
            towers.append((element.path, plan_region(element, encoder_decoder)))
        elif id(element) in partner:
            decoder_region = partner[id(element)]
            encoder = plan_region(element, encoder_decoder)
            decoder = plan_region(decoder_region, encoder_decoder)
            if encoder_decoder == "parallel":
                chain.append(Side([(element.path, encoder), (decoder_region.path, decoder)], towers=False))
            else:
                chain += [encoder, decoder]
        elif id(element) not in paired:
            chain.append(plan_region(element, encoder_decoder))
    plan: Plan = Chain(chain)
    if towers:
        if chain:  # the region's own blocks (IDEFICS' language model) are one more tower
            towers.append((_plan_name(chain[0]), plan))
        plan = Side(towers, towers=True) if len(towers) > 1 else towers[0][1]
    return Scoped(region, plan)


def pair_encoders(elements: list) -> dict[int, Region]:
    """id(encoder region) -> the decoder region it feeds: the first unpaired one after it."""
    partner: dict[int, Region] = {}
    waiting: list[Region] = []
    for element in elements:
        if isinstance(element, Region) and element.kind == "encoder":
            waiting.append(element)
        elif isinstance(element, Region) and element.kind == "decoder" and waiting:
            partner[id(waiting.pop(0))] = element
    return partner


def tower_names(plan: Plan) -> list[str]:
    """Names of every tower that runs side by side with another one."""
    if isinstance(plan, Scoped):
        return tower_names(plan.plan)
    if isinstance(plan, Chain):
        return [name for part in plan.parts for name in tower_names(part)]
    if isinstance(plan, Side):
        own = [name for name, _ in plan.members] if plan.towers else []
        return own + [name for _, member in plan.members for name in tower_names(member)]
    return []


def number(plan: Plan, tower: Optional[str] = None) -> Numbering:
    """Ids of the blocks of ``plan``, starting at 1 (0 is the stem)."""
    numbering = Numbering()
    _assign(plan, 0, numbering, tower, HEAD)
    return numbering


def _assign(plan: Plan, start: int, out: Numbering, tower: Optional[str], after: Optional[int]) -> int:
    """Number ``plan`` after id ``start``; return its last id. ``after`` is the id of what runs
    after the plan when nothing else of its parent does (``None``: its own last id)."""
    if isinstance(plan, Blocks):
        for k, unit in enumerate(plan.units, start=1):
            out.unit_ids[unit] = start + k
        return start + len(plan.units)
    if isinstance(plan, Chain):
        for k, part in enumerate(plan.parts):
            start = _assign(part, start, out, tower, after if k == len(plan.parts) - 1 else None)
        return start
    if isinstance(plan, Scoped):
        end = _assign(plan.plan, start, out, tower, after)
        out.spans[plan.region.path] = (start, end)
        out.after[plan.region.path] = end if after is None else after
        if isinstance(plan.plan, Side) and plan.plan.towers:
            out.member_of[plan.region.path] = {
                unit: name for name, member in plan.plan.members for unit in _units(member)
            }
        return end
    # side by side: number each member on its own, then shift (or stretch) it after `start`
    numbered = []
    for k, (name, member) in enumerate(plan.members):
        own = Numbering()
        # towers end where the whole side does; an encoder beside its decoder ends at its last block
        member_after = after if plan.towers or k == len(plan.members) - 1 else None
        numbered.append((name, own, _assign(member, 0, own, tower, member_after)))
    chosen = next((depth for name, _, depth in numbered if plan.towers and tower_matches(name, tower)), None)
    top = chosen if chosen is not None else max(depth for _, _, depth in numbered)
    for name, own, depth in numbered:
        place = functools.partial(_place, start=start, depth=depth, target=chosen)
        if plan.towers:
            out.towers[name] = (start, place(depth))
        out.towers.update((t, (place(a), place(b))) for t, (a, b) in own.towers.items())
        out.spans.update((path, (place(a), place(b))) for path, (a, b) in own.spans.items())
        out.unit_ids.update((unit, place(i)) for unit, i in own.unit_ids.items())
        out.after.update((path, a if a == HEAD else place(a)) for path, a in own.after.items())
        out.member_of.update(own.member_of)
    return start + top


def _place(layer_id: int, start: int, depth: int, target: Optional[int]) -> int:
    """A member's own id, numbered from 0, shifted after ``start`` (and stretched)."""
    return start + _stretch(layer_id, depth, target)


def _stretch(layer_id: int, depth: int, target: Optional[int]) -> int:
    """Id ``layer_id`` of a tower ``depth`` blocks deep on a schedule ``target`` blocks deep
    (unchanged without a target): its last block lands on ``target``.

    Example:
        >>> [_stretch(i, 4, 8) for i in range(5)], [_stretch(i, 4, 2) for i in range(5)]
        ([0, 2, 4, 6, 8], [0, 1, 1, 2, 2])
    """
    if target is None or depth == 0:
        return layer_id
    return math.ceil(layer_id * target / depth)


def tower_matches(name: str, tower: Optional[str]) -> bool:
    """Whether ``tower`` names the tower ``name``: its whole path or its last part(s)."""
    return tower is not None and (name == tower or name.endswith("." + tower))


def _units(plan: Plan) -> list[Unit]:
    if isinstance(plan, Blocks):
        return list(plan.units)
    if isinstance(plan, Chain):
        return [u for part in plan.parts for u in _units(part)]
    if isinstance(plan, Scoped):
        return _units(plan.plan)
    return [u for _, member in plan.members for u in _units(member)]


def _plan_name(plan: Plan) -> str:
    """A name for a plan: the path of its first stack or region."""
    if isinstance(plan, Blocks):
        return plan.path
    if isinstance(plan, Scoped):
        return plan.region.path
    if isinstance(plan, Chain):
        return _plan_name(plan.parts[0])
    return plan.members[0][0]


class Placer:
    """Ids of parameters outside every block (see the module docstring)."""

    def __init__(
        self, root: Region, numbering: Numbering, order: list[str], output_paths: set[str],
        modules: Mapping[str, nn.Module],
    ) -> None:
        self.numbering = numbering
        self.head = max(numbering.unit_ids.values()) + 1
        self.output_paths = output_paths
        self.position = {name: i for i, name in enumerate(order)}
        self.unit_at = {path: unit for unit in numbering.unit_ids for path in unit}
        # module path -> the innermost unit holding it, filled top-down in one pass over the modules
        self.unit_below: dict[str, Optional[Unit]] = {"": None}
        for path in modules:  # the modules of root.module, by path
            if path:
                self.unit_below[path] = self.unit_at.get(path) or self.unit_below.get(path.rpartition(".")[0])
        self.scopes = [r for r in root.regions() if r.path in numbering.spans]
        self.first = {}  # unit -> position of its first parameter
        for name, i in self.position.items():
            unit = self.unit_of(name)
            if unit is not None:
                self.first.setdefault(unit, i)
        self.scope_units = {
            region.path: sorted((u for u in region.units() if u in self.first), key=self.first.__getitem__)
            for region in self.scopes
        }

    def unit_of(self, name: str) -> Optional[Unit]:
        owner = name.rpartition(".")[0]
        if owner in self.unit_below:
            return self.unit_below[owner]
        for path in reversed(parents(name)[1:]):  # innermost module first; never the root
            unit = self.unit_at.get(path)
            if unit is not None:
                return unit
        return None

    def layer_id(self, name: str) -> int:
        unit = self.unit_of(name)
        if unit is not None:
            return self.numbering.unit_ids[unit]
        if any(_inside(name, path) for path in self.output_paths):
            return self.head  # the language-model head, wherever it sits (BLIP-2: in a tower)
        scope = max((r for r in self.scopes if _inside(name, r.path)), key=lambda r: len(r.path))
        start, _ = self.numbering.spans[scope.path]
        after = self.numbering.after[scope.path]
        after = self.head if after == HEAD else after
        units = self.scope_units[scope.path]
        position = self.position[name]
        before = [u for u in units if self.first[u] < position]
        if len(before) == len(units):
            return after  # runs after the last block, whatever its name (BigBirdPegasus' final `layernorm_embedding`)
        if "embed" in name.lower():
            return 0
        if not before:
            return start
        prev, nxt = before[-1], units[len(before)]
        towers = self.numbering.member_of.get(scope.path)
        if towers is not None and towers.get(prev) != towers.get(nxt):
            return after  # glue between towers (a projector) runs after them
        return self.numbering.unit_ids[prev if joins_previous(name, prev, nxt) else nxt]


def _inside(name: str, path: str) -> bool:
    return path == "" or name.startswith(path + ".")
