"""Check a layer map against a real forward pass: ids must never go down in the order the
forward pass first uses the parameters.

Useful for a hand-written rule as much as for the automatic maps (the tests and the zoo sweeps
run it on every model). Works on meta tensors too, so a full-size model costs no memory.

Example:
    >>> import torch
    >>> from hf_timm_layerdecay import layer_ids
    >>> model = torch.nn.Sequential(torch.nn.Linear(2, 3), torch.nn.ReLU(), torch.nn.Linear(3, 1))
    >>> order = first_use_order(model, lambda m: m(torch.zeros(1, 2)))
    >>> order
    ['0.weight', '0.bias', '2.weight', '2.bias']
    >>> order_violations(order, layer_ids(model))
    []
    >>> order_violations(order, {"0.weight": 1, "0.bias": 1, "2.weight": 0, "2.bias": 0})
    ['2.weight (id 0) is used after 0.weight (id 1)', '2.bias (id 0) is used after 0.weight (id 1)']
"""

from __future__ import annotations

from typing import Callable, Mapping, Optional

import torch
from torch import nn
from torch.overrides import TorchFunctionMode
from torch.utils._pytree import tree_flatten


class FirstUse(TorchFunctionMode):
    """Records every parameter the first time any torch operation receives it.

    Finer than forward hooks on modules: it times parameters that no module hook sees (tokens
    held by the root module, RoPE frequencies read by a method, a shared module called from
    inside blocks).
    """

    def __init__(self, names: dict[int, str]) -> None:
        super().__init__()
        self.names, self.order, self._seen = names, [], set()

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        for value in tree_flatten((args, kwargs))[0]:
            if isinstance(value, nn.Parameter) and id(value) not in self._seen:
                self._seen.add(id(value))
                if id(value) in self.names:
                    self.order.append(self.names[id(value)])
        return func(*args, **kwargs)


def first_use_order(model: nn.Module, run: Callable[[nn.Module], object]) -> list[str]:
    """Parameter names in the order ``run(model)`` first uses them (unused ones left out)."""
    mode = FirstUse({id(p): n for n, p in model.named_parameters()})
    with torch.no_grad(), mode:
        run(model)
    return mode.order


def order_violations(
    order: list[str], ids: Mapping[str, int], exempt: Optional[Callable[[str, int], bool]] = None
) -> list[str]:
    """Where ids go down along ``order`` (names missing from ``ids`` are skipped).

    ``exempt(name, id)`` skips parameters that are allowed anywhere, e.g. a class token kept at
    id 0 by convention although a model first uses it at its class-attention blocks.
    """
    problems, highest, highest_at = [], -1, None
    for name in order:
        if name not in ids or (exempt is not None and exempt(name, ids[name])):
            continue
        if ids[name] < highest:
            problems.append(f"{name} (id {ids[name]}) is used after {highest_at} (id {highest})")
        elif ids[name] > highest:
            highest, highest_at = ids[name], name
    return problems
