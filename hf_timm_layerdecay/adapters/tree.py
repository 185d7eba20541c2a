"""Tree mechanics every adapter shares: which modules hold blocks, and when a module is split
into the blocks it holds.

(The order modules run in is :mod:`.run_order`; seeing through wrappers, :mod:`.wrappers`;
paths and their common parts, :mod:`.paths`; the one walk of the tree, :mod:`.walk`.)
"""

from __future__ import annotations

from typing import Optional

from torch import nn

#: Modules that hold their items without computing anything themselves; ``nn.Sequential`` and
#: ``nn.ModuleList`` run them in registration order.
CONTAINERS = (nn.ModuleList, nn.Sequential, nn.ModuleDict)

#: A module (a block, a timm group, a region) is split into the blocks it holds when those hold
#: at least this share of its elements: then the blocks are what trains, and the rest (a
#: downsample, a norm) goes with them. Below it, the module is one unit and its inner lists are
#: details (a few small repeated heads inside one large block).
SPLIT_SHARE = 0.5


def holds_most(part: int, whole: int) -> bool:
    """Whether ``part`` elements are at least :data:`SPLIT_SHARE` of ``whole``.

    Example:
        >>> holds_most(50, 100), holds_most(49, 100)
        (True, False)
    """
    return part >= SPLIT_SHARE * whole


def first_path(model: nn.Module, target: nn.Module) -> Optional[str]:
    """The first path of ``target`` in ``model`` in ``named_modules()`` order (depth first,
    children in registration order), stopping there: ``None`` when it is not inside.

    Example:
        >>> inner = nn.Linear(2, 2)
        >>> first_path(nn.Sequential(nn.ReLU(), nn.Sequential(inner)), inner)
        '1.0'
    """
    pending = [("", model)]
    while pending:
        path, module = pending.pop()
        if module is target:
            return path
        prefix = path + "." if path else ""
        pending.extend((prefix + key, child) for key, child in reversed(module._modules.items()) if child is not None)
    return None
