"""Check a layer map against a real forward pass: ids must never go down in the order the
forward pass first uses the parameters.

Useful for a hand-written rule as much as for the automatic maps (the tests and the zoo sweeps
run it on every model). Two granularities of one oracle:

* parameters (:func:`first_use_order`, :func:`order_violations`): the order in which torch
  operations first receive each parameter, which also times what no module hook sees (tokens
  held by the root module, RoPE frequencies read by a method, a shared module called from inside
  blocks). Works on meta tensors too, so a full-size model costs no memory;
* modules (:func:`first_run_order`, :func:`forward_order_problems`): the order in which forward
  pre-hooks first see the modules that own parameters, checked within regions (the encoder and
  the decoder, each tower) when asked.

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

from typing import Callable, Iterable, Mapping, Optional

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


def first_run_order(model: nn.Module, run: Callable[[nn.Module], object]) -> list[str]:
    """Paths of the parameter-owning modules, in the order ``run(model)`` first calls them."""
    order: list[str] = []
    seen: set[str] = set()
    handles = []
    for path, module in model.named_modules():
        if any(True for _ in module.parameters(recurse=False)):
            def hook(mod, args, kwargs=None, path=path):
                if path not in seen:
                    seen.add(path)
                    order.append(path)
            handles.append(module.register_forward_pre_hook(hook))
    try:
        with torch.no_grad():
            run(model)
    finally:
        for handle in handles:
            handle.remove()
    return order


def module_order_violations(
    order: list[str], owned: Mapping[str, list[str]], ids: Mapping[str, int], scope: str = ""
) -> list[str]:
    """Where the ids go down along ``order`` (module paths, each in ``owned``: path -> names of
    its parameters), counting only the modules under ``scope`` when it is given.

    Example:
        >>> module_order_violations(["a", "b"], {"a": ["a.w"], "b": ["b.w"]}, {"a.w": 1, "b.w": 0})
        ['b (id 0) runs after a (id 1)']
    """
    problems = []
    highest, highest_at = -1, None
    for path in order:
        if scope and not (path == scope or path.startswith(scope + ".")):
            continue
        module_ids = [ids[n] for n in owned[path]]
        if min(module_ids) < highest:
            problems.append(f"{path} (id {min(module_ids)}) runs after {highest_at} (id {highest})")
        if max(module_ids) > highest:
            highest, highest_at = max(module_ids), path
    return problems


def tied_names(model: nn.Module) -> set[str]:
    """Names (as ``named_parameters()`` reports them) of parameters reachable under several names."""
    count: dict[int, int] = {}
    for _, param in model.named_parameters(remove_duplicate=False):
        count[id(param)] = count.get(id(param), 0) + 1
    return {name for name, param in model.named_parameters() if count[id(param)] > 1}


def forward_order_problems(
    model: nn.Module,
    ids: Mapping[str, int],
    run: Callable[[nn.Module], object],
    groups: Optional[tuple[str, ...]] = None,
    exempt: Iterable[str] = frozenset(),
) -> list[str]:
    """Where the ids go down along the first-run order of the modules (within each region of
    ``groups`` when given), plus a first module not at the lowest id or a last one not at the
    highest. Only leaf modules are timed (a module with children and parameters of its own is
    not: its call does not say when those parameters are used); ``exempt`` names (tied copies,
    say) are left out."""
    exempt = set(exempt)
    reported = {id(param): name for name, param in model.named_parameters()}
    owned: dict[str, list[str]] = {}
    for path, module in model.named_modules():
        if any(True for _ in module.children()):
            continue
        names = [reported[id(p)] for _, p in module.named_parameters(recurse=False)]  # tied copies too
        names = [n for n in names if n in ids and n not in exempt]
        if names:
            owned[path] = names
    order = [p for p in first_run_order(model, run) if p in owned]
    timed = [ids[n] for p in order for n in owned[p]]
    problems = [p for group in groups or ("",) for p in module_order_violations(order, owned, ids, group)]
    first, last = [ids[n] for n in owned[order[0]]], [ids[n] for n in owned[order[-1]]]
    if min(first) != min(timed):
        problems.append(f"the first module to run, {order[0]}, has id {min(first)}, not {min(timed)}")
    if max(last) != max(timed):
        problems.append(f"the last module to run, {order[-1]}, has id {max(last)}, not {max(timed)}")
    return problems
