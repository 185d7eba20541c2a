"""The layout of a transformers model: its block stacks and how its parts relate.

A Hugging Face model is a tree of *regions*, each a part that has blocks of its own:

* the model itself;
* a **tower**: a sub-model built from its own configuration (its ``config`` is of another class
  than the enclosing region's): CLIP's ``text_model`` and ``vision_model``, LLaVA's
  ``vision_tower`` and ``language_model``, BLIP-2's ``qformer``. Towers run side by side;
* an **encoder** and a **decoder**: the modules ``get_encoder()`` / ``get_decoder()`` return on a
  model whose config says ``is_encoder_decoder`` (T5, BART, Whisper, DETR);
* a **backbone**: a feature extractor feeding the rest of the model (a ``BackboneMixin`` such as
  ``SwinBackbone``, or a timm model inside a DETR). It runs first, like a stem with blocks.

Inside a region, a *stack* is an ``nn.ModuleList`` of ``GradientCheckpointingLayer`` s (every
repeated block of transformers 5 is one), each item a block. In a hierarchical model the items are
stages holding stacks of their own (Swin, Hiera): at ``granularity="block"`` those inner blocks are
the units, at ``"stage"`` the stages. Equal-length sibling stacks of the same parent run index by
index (IDEFICS' ``layers`` and ``gated_cross_attn_layers``), so item ``i`` of each forms one unit. A
region without any such stack (ConvNeXt, ALBERT, XLNet, a timm backbone) gets its blocks from the
module structure alone (:mod:`.structural`). Convolutional feature encoders (wav2vec2's
``feature_extractor``) are a stem, not blocks.

:func:`find_layout` returns the tree as :class:`Region` s; :mod:`.numbering` turns it into ids.
"""

from __future__ import annotations

import importlib
import warnings
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Iterator, Optional, Union

from torch import nn

from .. import structural
from ..paths import interleave
from ..run_order import first_positions, run_order, unwrapped
from ..tree import holds_most
from ..index import ModelIndex, as_index

Unit = tuple[str, ...]  # the module paths that together form one block

#: Attribute names of the convolutional front ends of speech models (transformers' convention):
#: their stacks are a stem, not blocks.
_FRONT_END_NAMES = frozenset({"feature_extractor", "feature_encoder"})


@dataclass
class Stack:
    """Blocks that run one after another, each a :data:`Unit`, in forward order."""

    path: str
    units: list[Unit]


@dataclass
class Region:
    """A part of the model with blocks of its own (see the module docstring).

    Attributes:
        path: module path (``""`` for the model itself).
        kind: ``"model"``, ``"tower"``, ``"encoder"``, ``"decoder"`` or ``"backbone"``.
        elements: its stacks and sub-regions, in the order they run (:func:`.run_order.run_order`).
        config_type: class of the configuration the region was built from.
    """

    path: str
    module: nn.Module
    kind: str
    elements: list[Union[Stack, "Region"]] = field(default_factory=list)
    config_type: Optional[type] = None
    #: on the model's region: every parameter name, aliases included, in the order they run
    order: list[str] = field(default_factory=list)

    def units(self) -> Iterator[Unit]:
        """Every unit of the region, sub-regions included, in element order."""
        for element in self.elements:
            yield from element.units if isinstance(element, Stack) else element.units()

    def regions(self) -> Iterator["Region"]:
        """This region and every region below it."""
        yield self
        for element in self.elements:
            if isinstance(element, Region):
                yield from element.regions()

    def has_units(self) -> bool:
        return next(self.units(), None) is not None


def find_layout(model: Union[nn.Module, ModelIndex], granularity: str = "block") -> Region:
    """The region tree of a transformers model, or of the model of an index (any ``nn.Module``
    works: it is one region)."""
    return _Finder(as_index(model), granularity).root


def warn_unnumbered_block_lists(model: nn.Module, root: "Region", ids: dict[str, int]) -> None:
    """On transformers 4.x, warn about block stacks the layout missed (:func:`unnumbered_block_lists`)."""
    if not _TRANSFORMERS_4:
        return
    missed = unnumbered_block_lists(model, root, ids)
    if missed:
        import transformers

        warnings.warn(
            f"transformers {transformers.__version__}: in {type(model).__name__}, every item of "
            f"{', '.join(repr(p) for p in missed[:4])}{' ...' if len(missed) > 4 else ''} gets one and the same layer "
            "id. Before transformers 5 not every repeated block is a GradientCheckpointingLayer, so these may be "
            "block stacks the adapter cannot see here: check the map with layer_decay_report(), or give a rule "
            "(strategy=...)",
            UserWarning,
            stacklevel=3,
        )


def _transformers_major() -> int:
    try:
        import transformers
    except ImportError:  # pragma: no cover - the adapter only runs on transformers models
        return 0
    return int(transformers.__version__.split(".")[0])


#: transformers 4.x: not every repeated block is a ``GradientCheckpointingLayer`` yet (5.0 made them so)
_TRANSFORMERS_4 = _transformers_major() == 4
#: share of the model's parameter tensors under a list of repeated modules that makes it a block
#: stack the layout should have numbered (:func:`unnumbered_block_lists`)
_MISSED_STACK_SHARE = 0.05


def unnumbered_block_lists(model: nn.Module, root: "Region", ids: dict[str, int]) -> list[str]:
    """Paths of ``nn.ModuleList`` s of two or more modules of one class, holding at least
    :data:`_MISSED_STACK_SHARE` of the parameter tensors, all of them at one id, that are
    neither numbered blocks, nor inside one, nor around one, nor a convolutional front end: block
    stacks the layout missed (lists placed beside the blocks, one item per block, are not).

    Example:
        >>> from torch import nn
        >>> class Net(nn.Module):
        ...     def __init__(self):
        ...         super().__init__()
        ...         self.embed, self.layers = nn.Linear(2, 2), nn.ModuleList(nn.Linear(2, 2) for _ in range(3))
        >>> net = Net()
        >>> lumped = {n: 0 if n.startswith("embed") else 1 for n, _ in net.named_parameters()}
        >>> unnumbered_block_lists(net, Region("", net, "model"), lumped)
        ['layers']
        >>> unnumbered_block_lists(net, Region("", net, "model"), {n: i for i, (n, _) in enumerate(net.named_parameters())})
        []
    """
    unit_paths = [p for unit in root.units() for p in unit]
    names = [n for n, _ in model.named_parameters()]
    missed: list[str] = []
    for path, module in model.named_modules():
        if not path or not isinstance(module, nn.ModuleList) or len(module) < 2:
            continue
        if len({type(item) for item in module}) != 1 or any(path.startswith(m + ".") for m in missed):
            continue
        below = path + "."
        if any(u == path or u.startswith(below) or path.startswith(u + ".") for u in unit_paths):
            continue
        if any(part in _FRONT_END_NAMES for part in path.split(".")):
            continue
        held = [n for n in names if n.startswith(below)]
        if held and len(held) >= _MISSED_STACK_SHARE * len(names) and len({ids.get(n) for n in held}) == 1:
            missed.append(path)
    return missed


class _Finder:
    """One pass over the module tree, collecting regions and stacks."""

    def __init__(self, index: ModelIndex, granularity: str) -> None:
        model = index.model
        self.granularity = granularity
        # stacks of whole items: stages are split here, once (see _block_units)
        self.tree = structural.ModuleTree(index, split_stages=False)
        self.modules = index.modules
        self.gc_class = _gradient_checkpointing_layer()
        if self.gc_class is None and _is_config(getattr(model, "config", None)):
            import transformers

            warnings.warn(
                f"transformers {transformers.__version__} has no GradientCheckpointingLayer (transformers >= 4.52): "
                f"the blocks of {type(model).__name__} come from its module structure alone, which misses stacks "
                "nested in towers (the language model of a vision-language model gets the head's id). "
                "hf_timm_layerdecay supports transformers >= 4.57; check this map with layer_decay_report()",
                UserWarning,
                stacklevel=2,
            )
        self.backbone_classes = _backbone_classes()
        self.roles: dict[int, str] = {}  # id(module) -> "encoder" / "decoder"
        # every path of a gradient-checkpointing stack: most blocks hold none, and this says so
        # without searching each block's subtree
        self.gc_stack_paths = [p for p, m in self.modules.items() if self._is_gc_stack(m)]
        names = run_order(model)
        self.first_at = first_positions(names)
        self.root = self._region("", model, "model")
        # index-aligned lists found by the structure (Florence-2's `convs[i]` before `blocks[i]`)
        self.root.order = interleave(names, self.tree.interleaved)

    def _region(self, path: str, module: nn.Module, kind: str) -> Region:
        config = getattr(module, "config", None)
        region = Region(path, module, kind, config_type=type(config) if _is_config(config) else None)
        self._walk(module, path, region)
        if not region.has_units():
            self._structural_fallback(region)
        region.elements.sort(key=self._first_index)
        return region

    def _walk(self, module: nn.Module, path: str, region: Region) -> None:
        pair = _encoder_decoder(module)  # on any level: DetrForSegmentation holds a DETR in `detr`
        if pair is not None:
            self.roles[id(pair[0])], self.roles[id(pair[1])] = "encoder", "decoder"
        children = self.tree.children(module, path)
        gc_stacks = {p: c for p, c in children if self._is_gc_stack(c)}
        interleaved: dict[str, Optional[Stack]] = {}
        for group in _aligned(gc_stacks):
            interleaved[group[0][0]] = Stack(group[0][0], self._interleaved_units(group))
            interleaved.update((p, None) for p, _ in group[1:])
        for child_path, child in children:
            kind = self._region_kind(child, region)
            if child_path in interleaved:
                if interleaved[child_path] is not None:
                    region.elements.append(interleaved[child_path])
            elif kind is not None:
                sub = self._region(child_path, child, kind)
                if sub.has_units():  # a sub-model without blocks (a prompt encoder) is loose here
                    region.elements.append(sub)
            elif child_path in gc_stacks:
                region.elements.append(Stack(child_path, self._stack_units(child_path, child)))
            elif not _is_front_end(child_path, child):  # front ends stay stem parameters
                self._walk(child, child_path, region)

    def _region_kind(self, module: nn.Module, region: Region) -> Optional[str]:
        role = self.roles.get(id(module))
        if role is not None:
            return role
        inner = unwrapped(module)
        if isinstance(inner, self.backbone_classes) or type(inner).__module__.startswith("timm."):
            return "backbone"
        config = getattr(inner, "config", None)
        if _is_config(config) and region.config_type is not None and type(config) is not region.config_type:
            return "tower"
        return None

    def _structural_fallback(self, region: Region) -> None:
        """Blocks of a region without gradient-checkpointing stacks, from the module structure."""
        stacks = [stack for stack in self.tree.walk(region.module, region.path) if stack]
        sizes = [self.tree.size(stack) for stack in stacks]
        for stack, size in zip(stacks, sizes):
            if size >= structural.MIN_STACK_SHARE * max(sizes):
                units = [u for unit in stack for u in self._split(unit)]
                region.elements.append(Stack(_common_prefix(units) or region.path, units))

    def _split(self, unit: Unit) -> list[Unit]:
        """A unit of the structure split like a block (units of index-aligned lists stay)."""
        if len(unit) > 1:
            return [unit]
        return self._block_units(unit[0], self.modules[unit[0]])

    def _first_index(self, element: Union[Stack, Region]) -> int:
        units = element.units if isinstance(element, Stack) else element.units()
        last = len(self.first_at)
        return min((self.first_at.get(p, last) for unit in units for p in unit), default=last)

    def _is_gc_stack(self, module: nn.Module) -> bool:
        if self.gc_class is None or not isinstance(module, nn.ModuleList):
            return False
        return any(isinstance(unwrapped(item), self.gc_class) for item in module)

    def _stack_units(self, path: str, stack: nn.Module, split: bool = True) -> list[Unit]:
        items = self.tree.children(stack, path)
        if not split:
            return [(item_path,) for item_path, _ in items]
        return [unit for item_path, item in items for unit in self._block_units(item_path, item)]

    def _block_units(self, path: str, block: nn.Module) -> list[Unit]:
        """A block as one unit; at block granularity a stage is split into its blocks, once: a
        stage (Swin, Hiera, ConvNeXt, a ResNet stage) is mostly a stack of blocks, itself or
        through a child; the blocks it is split into are not split again (a ResNet bottleneck is
        mostly its `layer` of conv-norm units, but it is one block)."""
        if self.granularity != "block":
            return [(path,)]
        inner = list(self._inner_gc_stacks(block, path))
        if inner:
            return [unit for p, stack in inner for unit in self._stack_units(p, stack, split=False)]
        children = self.tree.children(block, path)
        if self.tree.is_stack(path, block):
            return [(p,) for p, _ in children]
        stacks = [(p, c) for p, c in children if self.tree.is_stack(p, c)]
        if stacks and holds_most(sum(self.tree.numel[p] for p, _ in stacks), self.tree.numel[path]):
            return [(q,) for p, c in stacks for q, _ in self.tree.children(c, p)]
        return [(path,)]

    def _inner_gc_stacks(self, module: nn.Module, path: str) -> Iterator[tuple[str, nn.Module]]:
        below = path + "." if path else ""
        if not any(p.startswith(below) for p in self.gc_stack_paths):
            return
        for child_path, child in self.tree.children(module, path):
            if self._is_gc_stack(child):
                yield child_path, child
            else:
                yield from self._inner_gc_stacks(child, child_path)

    def _interleaved_units(self, group: list[tuple[str, nn.Module]]) -> list[Unit]:
        rows = zip(*(self.tree.children(stack, path) for path, stack in group))
        return [tuple(p for p, _ in row) for row in rows]




def _is_front_end(path: str, module: nn.Module) -> bool:
    """A convolutional feature encoder (wav2vec2 family): transformers names it
    ``feature_extractor`` and its class ``*FeatureEncoder``."""
    return path.rsplit(".", 1)[-1] in _FRONT_END_NAMES or type(unwrapped(module)).__name__.endswith("FeatureEncoder")


def _aligned(stacks: dict[str, nn.Module]) -> list[list[tuple[str, nn.Module]]]:
    """Sibling stacks of equal length (>= 2) and different block classes: they run index by
    index (IDEFICS' ``layers`` and ``gated_cross_attn_layers``)."""
    by_length: dict[int, list[tuple[str, nn.Module]]] = defaultdict(list)
    for path, stack in stacks.items():
        if len(stack) >= 2:
            by_length[len(stack)].append((path, stack))
    groups = []
    for group in by_length.values():
        kinds = {frozenset(type(unwrapped(item)) for item in stack) for _, stack in group}
        if len(group) >= 2 and len(kinds) == len(group):
            groups.append(group)
    return groups


def _common_prefix(units: list[Unit]) -> str:
    paths = [p.split(".") for unit in units for p in unit]
    prefix = []
    for parts in zip(*paths):
        if len(set(parts)) != 1:
            break
        prefix.append(parts[0])
    return ".".join(prefix)


def _encoder_decoder(module: nn.Module) -> Optional[tuple[nn.Module, nn.Module]]:
    """The encoder and decoder modules of an encoder-decoder model, else ``None``."""
    config = getattr(module, "config", None)
    if not getattr(config, "is_encoder_decoder", False):
        return None
    try:
        encoder, decoder = module.get_encoder(), module.get_decoder()
    except Exception:  # noqa: BLE001 - best-effort lookups of transformers; some models raise
        return None
    if not isinstance(encoder, nn.Module) or not isinstance(decoder, nn.Module):
        return None
    if module is encoder or module is decoder:
        return None
    if any(m is encoder for m in decoder.modules()) or any(m is decoder for m in encoder.modules()):
        return None  # one inside the other: not an encoder-decoder pair (a backbone's own encoder)
    return encoder, decoder


def _is_config(config: object) -> bool:
    try:
        from transformers import PretrainedConfig
    except ImportError:  # pragma: no cover - the adapter only runs on transformers models
        return False
    return isinstance(config, PretrainedConfig)


def _gradient_checkpointing_layer() -> Optional[type]:
    try:
        from transformers.modeling_layers import GradientCheckpointingLayer
    except ImportError:  # transformers < 4.52: blocks come from the module structure alone
        return None
    return GradientCheckpointingLayer


def _backbone_classes() -> tuple[type, ...]:
    """transformers' ``BackboneMixin`` (its older location subclasses it)."""
    for module_name in ("transformers.backbone_utils", "transformers.utils.backbone_utils"):
        try:
            mixin = importlib.import_module(module_name).BackboneMixin
        except (ImportError, AttributeError):
            continue
        return (mixin,)
    return ()
