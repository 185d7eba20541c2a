"""Small helpers on dotted module paths and parameter names, shared by the adapters."""

from __future__ import annotations

import functools
from typing import Iterable


def parents(name: str) -> tuple[str, ...]:
    """The module paths that contain a parameter, outermost first.

    Example:
        >>> parents("a.b.c")
        ('', 'a', 'a.b')
    """
    return _module_and_parents(name.rpartition(".")[0])


@functools.lru_cache(maxsize=1 << 16)
def _module_and_parents(path: str) -> tuple[str, ...]:
    # Cached: asked once per parameter by several adapters, and parameters of one module (and
    # modules of one parent) share their prefixes.
    if not path:
        return ("",)
    return _module_and_parents(path.rpartition(".")[0]) + (path,)


def shared_depth(name: str, paths: Iterable[str]) -> int:
    """How many leading components ``name`` shares with the closest of ``paths``.

    Example:
        >>> shared_depth("stages.1.downsample.weight", ["stages.0.blocks.2", "stages.1.blocks.0"])
        2
    """
    parts = name.split(".")
    best = 0
    for path in paths:
        depth = 0
        for a, b in zip(parts, path.split(".")):
            if a != b:
                break
            depth += 1
        best = max(best, depth)
    return best


def joins_previous(name: str, previous: Iterable[str], following: Iterable[str]) -> bool:
    """Where a parameter that runs between two blocks, in neither, goes: to the previous block
    when it shares a strictly longer module path with it, else to the following one. On a tie the
    following block, because what sits between two blocks at equal distance usually prepares the
    next one (a stage's downsample runs with the stage's first block, an input projection with
    the block it feeds). The one placement rule of the structural, timm and transformers maps.

    Example:
        >>> joins_previous("stages.1.downsample.weight", ["stages.0.blocks.2"], ["stages.1.blocks.0"])
        False
        >>> joins_previous("stages.0.norm.weight", ["stages.0.blocks.2"], ["stages.1.blocks.0"])
        True
    """
    return shared_depth(name, previous) > shared_depth(name, following)


def interleave(names: list[str], groups: list[list[str]]) -> list[str]:
    """``names`` reordered so that the parameters under each group's module paths (items of
    index-aligned lists in the order they run: ``a.0``, ``b.0``, ``a.1``, ``b.1``, ...) follow
    that order, at the place of the group's first parameter; everything else keeps its place.

    Example:
        >>> interleave(["a.0.w", "a.1.w", "b.0.w", "b.1.w", "head.w"], [["a.0", "b.0", "a.1", "b.1"]])
        ['a.0.w', 'b.0.w', 'a.1.w', 'b.1.w', 'head.w']
    """
    rank = {item: (g, r) for g, items in enumerate(groups) for r, item in enumerate(items)}
    if not rank:
        return list(names)
    anchor: dict[int, int] = {}
    keyed = []
    for position, name in enumerate(names):
        hit = next((rank[p] for p in parents(name) if p in rank), None)
        if hit is None:
            keyed.append(((position, -1, position), name))
        else:
            keyed.append(((anchor.setdefault(hit[0], position), hit[1], position), name))
    return [name for _, name in sorted(keyed)]
