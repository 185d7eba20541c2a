"""The correctness oracle for layer maps as test assertions: ids never go down along a real
forward pass (the module-level check of :mod:`hf_timm_layerdecay.verify`).

Every module that owns parameters directly is timed by a forward pre-hook at its first call; the
ids of its parameters, read in that order, must never decrease. The first module run must hold
the lowest id and the last the highest; every trainable parameter must be mapped.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping

from torch import nn

from hf_timm_layerdecay.verify import first_run_order, module_order_violations


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
