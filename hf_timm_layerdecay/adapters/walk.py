"""One walk of a module tree: parameters, their other paths and every module, in one pass.

Walking the module tree is the main cost of building groups: ``named_parameters()`` is a
chain of Python generators, and the adapters, the weight-decay rules and the final check all
need the parameters, their other paths (shared modules) and modules by path. :func:`walk`
collects all of it in one plain depth-first pass, without the generators (figures in
``docs/benchmarks.md``); a call walks its model once, in its
:class:`~hf_timm_layerdecay.adapters.index.ModelIndex`, which every stage is given.
"""

from __future__ import annotations

import contextlib
import gc
from dataclasses import dataclass
from typing import Iterator

from torch import nn


@dataclass(frozen=True)
class Walk:
    """What one walk of a module tree found.

    Attributes:
        named: ``list(model.named_parameters())``: each parameter once, under its first path.
        aliases: reported name -> every path the parameter is reachable under, the reported
            one first (``named_parameters(remove_duplicate=False)``).
        modules: every module path -> module, shared modules under each of their paths
            (``named_modules(remove_duplicate=False)``), ``""`` for the model itself.
    """

    named: list[tuple[str, nn.Parameter]]
    aliases: dict[str, list[str]]
    modules: dict[str, nn.Module]

    @property
    def names(self) -> list[str]:
        """The reported names, in order."""
        return [name for name, _ in self.named]


@contextlib.contextmanager
def collector_paused() -> Iterator[None]:
    """Pause Python's cyclic garbage collector for the duration of the block.

    A call allocates a few small objects per parameter (names, pairs, lists) and keeps most of
    them until it returns. With the collector on, those allocations trigger collections that
    traverse every object alive, the model's hundreds of thousands of modules and dicts
    included, again and again, which makes the call superlinear in the number of tensors
    (``docs/benchmarks.md``). Nothing is lost: what the call leaves in cycles is collected at the
    next collection after it.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def walk(model: nn.Module) -> Walk:
    """Parameters, their aliases and every module path of ``model``, from one pass.

    Example:
        >>> shared = nn.Linear(2, 2)
        >>> found = walk(nn.Sequential(shared, nn.ReLU(), shared))
        >>> found.names, found.aliases["0.weight"], list(found.modules)
        (['0.weight', '0.bias'], ['0.weight', '2.weight'], ['', '0', '1', '2'])
    """
    try:
        return _walk(model)
    except _RedefinedTree:
        return _walk_with_torch(model)


def _walk(model: nn.Module) -> Walk:
    modules: dict[str, nn.Module] = {}
    pending = [("", model)]
    while pending:  # depth first, children in registration order: named_modules()'s order
        path, module = pending.pop()
        if type(module) not in _PLAIN_TYPES:
            _check_plain(type(module))
        modules[path] = module
        children = module._modules
        if children:
            prefix = path + "." if path else ""
            pending.extend([(prefix + key, child) for key, child in reversed(children.items()) if child is not None])
    named: list[tuple[str, nn.Parameter]] = []
    aliases: dict[str, list[str]] = {}
    first: dict[int, str] = {}
    for path, module in modules.items():
        own = module._parameters
        if not own:
            continue
        prefix = path + "." if path else ""
        for key, param in own.items():
            if param is None:
                continue
            name = prefix + key
            reported = first.get(id(param))
            if reported is None:
                first[id(param)] = name
                named.append((name, param))
                aliases[name] = [name]
            else:
                aliases[reported].append(name)
    return Walk(named, aliases, modules)


def _walk_with_torch(model: nn.Module) -> Walk:
    """The same through torch's own iterators, for trees with a module that redefines them."""
    first: dict[int, str] = {}
    aliases: dict[str, list[str]] = {}
    named = []
    for name, param in model.named_parameters(remove_duplicate=False):
        reported = first.setdefault(id(param), name)
        if reported is name:
            named.append((name, param))
            aliases[name] = []
        aliases[reported].append(name)
    return Walk(named, aliases, dict(model.named_modules(remove_duplicate=False)))


class _RedefinedTree(Exception):
    """A module of the tree redefines how ``nn.Module`` lists its parameters or submodules."""


#: Module classes known to list parameters and submodules as ``nn.Module`` does.
_PLAIN_TYPES: set[type] = set()
_TREE_METHODS = ("named_parameters", "named_modules", "_named_members", "named_children")


def _check_plain(cls: type) -> None:
    if any(getattr(cls, method, None) is not getattr(nn.Module, method) for method in _TREE_METHODS):
        raise _RedefinedTree(cls.__name__)
    _PLAIN_TYPES.add(cls)
