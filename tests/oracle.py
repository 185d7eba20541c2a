"""The correctness oracle for layer maps: ids never go down along a real forward pass.

Every module that owns parameters directly is timed by a forward pre-hook at its first call; the
ids of its parameters, read in that order, must never decrease. The first module run must hold
the lowest id and the last the highest; every trainable parameter must be mapped.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping

import torch
from torch import nn


def first_run_order(model: nn.Module, run: Callable[[nn.Module], Any]) -> list[str]:
    """Paths of the parameter-owning modules, in the order a forward pass first calls them."""
    order: list[str] = []
    handles = []
    for path, module in model.named_modules():
        if any(True for _ in module.parameters(recurse=False)):
            def hook(mod, args, kwargs=None, path=path):
                if path not in seen:
                    seen.add(path)
                    order.append(path)
            handles.append(module.register_forward_pre_hook(hook))
    seen: set[str] = set()
    try:
        with torch.no_grad():
            run(model)
    finally:
        for handle in handles:
            handle.remove()
    return order


def forward_order_violations(model: nn.Module, ids: Mapping[str, int], run: Callable[[nn.Module], Any]) -> list[str]:
    """Where the ids decrease along the first-run order of modules (empty when none).

    ``ids`` is keyed like ``model.named_parameters()``; modules the forward pass never calls are
    not checked (an unused head, say).
    """
    own = {}
    for path, module in model.named_modules():
        names = [f"{path}.{n}" if path else n for n, _ in module.named_parameters(recurse=False)]
        names = [n for n in names if n in ids]
        if names:
            own[path] = names
    return module_order_violations([p for p in first_run_order(model, run) if p in own], own, ids)


def module_order_violations(
    order: list[str], owned: Mapping[str, list[str]], ids: Mapping[str, int], scope: str = ""
) -> list[str]:
    """Where the ids go down along ``order`` (module paths, each in ``owned``: path -> names of
    its parameters), counting only the modules under ``scope`` when it is given."""
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


def assert_forward_monotone(model: nn.Module, ids: Mapping[str, int], run: Callable[[nn.Module], Any]) -> None:
    """The oracle as an assertion: ids non-decreasing, stem first (0), head last (max), all mapped."""
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable <= set(ids), f"unmapped parameters: {sorted(trainable - set(ids))[:10]}"
    violations = forward_order_violations(model, ids, run)
    assert not violations, "ids go down along the forward pass:\n" + "\n".join(violations[:10])
    order = [p for p in first_run_order(model, run)]
    own_ids = {p: [ids[n] for n in _own_names(model, p) if n in ids] for p in order}
    first = next(v for v in own_ids.values() if v)
    assert min(first) == 0, f"the first module to run has id {min(first)}, not 0"
    last = next(v for v in reversed(list(own_ids.values())) if v)
    assert max(last) == max(ids.values()), f"the last module to run has id {max(last)}, not the head's {max(ids.values())}"


def _own_names(model: nn.Module, path: str) -> list[str]:
    module = model.get_submodule(path) if path else model
    return [f"{path}.{n}" if path else n for n, _ in module.named_parameters(recurse=False)]
