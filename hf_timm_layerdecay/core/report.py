"""Describe parameter groups: a text table for people, plain data for JSON and tests."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Iterable, Optional

from .checks import check_number
from .groups import Coverage, as_group_list, holds_copies, param_group_coverage


@dataclass(frozen=True)
class GroupRow:
    """One parameter group, described."""

    name: str
    layer_id: Optional[int]
    layers: list[int]
    scale: Optional[float]
    lr: Optional[float]
    weight_decay: float
    tensors: int
    elements: int
    param_names: list[str]


@dataclass(frozen=True)
class LayerDecayReport:
    """What a list of parameter groups does, group by group.

    ``str(report)`` is a text table; :meth:`to_dict` is JSON-ready data. When the report was
    made with the model, :attr:`coverage` says whether every trainable parameter is in exactly
    one group.

    Example:
        >>> import torch
        >>> from hf_timm_layerdecay import auto_layer_decay, layer_decay_report
        >>> model = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.Linear(4, 2))
        >>> report = layer_decay_report(auto_layer_decay(model, lr=1.0, layer_decay=0.5), model)
        >>> [(row["name"], row["lr"]) for row in report.to_dict()["groups"]][:2]
        [('layer_0_decay', 0.5), ('layer_0_no_decay', 0.5)]
        >>> report.coverage.ok
        True
    """

    rows: list[GroupRow]
    coverage: Optional[Coverage] = None
    notes: tuple[str, ...] = field(default=())

    def to_dict(self) -> dict:
        """JSON-ready data: ``{"groups": [...], "coverage": {...} | None, "notes": [...]}``."""
        coverage = None
        if self.coverage is not None:
            coverage = {**asdict(self.coverage), "ok": self.coverage.ok}
            coverage = {k: list(v) if isinstance(v, tuple) else v for k, v in coverage.items()}
        return {"groups": [asdict(row) for row in self.rows], "coverage": coverage, "notes": list(self.notes)}

    def table(self, max_names: int = 3) -> str:
        """A fixed-width table, one line per group, with the first ``max_names`` names (0: only
        how many)."""
        if isinstance(max_names, bool) or not isinstance(max_names, int) or max_names < 0:
            raise ValueError(f"max_names must be an int >= 0, got {max_names!r}")
        header = ("group", "layer", "scale", "lr", "wd", "tensors", "elements", "parameters")
        lines = [
            (
                row.name,
                _layers(row),
                _num(row.scale),
                _num(row.lr),
                _num(row.weight_decay),
                str(row.tensors),
                f"{row.elements:,}",
                _names(row.param_names, max_names),
            )
            for row in self.rows
        ]
        widths = [max(len(cells[i]) for cells in [header, *lines]) for i in range(len(header) - 1)]
        text = [_line(header, widths), _line(tuple("-" * w for w in widths) + ("-" * 10,), widths)]
        text += [_line(cells, widths) for cells in lines]
        text.append(self._summary())
        text += [f"note: {note}" for note in self.notes]
        return "\n".join(text)

    def __str__(self) -> str:
        return self.table()

    def _summary(self) -> str:
        tensors = sum(row.tensors for row in self.rows)
        elements = sum(row.elements for row in self.rows)
        layers = {layer for row in self.rows for layer in row.layers}
        text = f"{len(self.rows)} groups, {len(layers)} layers, {tensors} tensors, {elements:,} elements"
        if self.coverage is not None:
            if self.coverage.ok:
                text += f"; all {self.coverage.trainable} trainable parameters in exactly one group"
            else:
                text += "; PROBLEM: " + "; ".join(self.coverage.problems())
        return text


def layer_decay_report(
    groups: Any,
    model: Any = None,
    *,
    lr: Optional[float] = None,
    notes: Iterable[str] = (),
) -> LayerDecayReport:
    """Describe parameter groups (from :func:`auto_layer_decay` or ``optimizer.param_groups``).

    Args:
        groups: the parameter groups, or an optimizer.
        model: when given, names are looked up for groups without ``param_names`` and the
            report says whether every trainable parameter is in exactly one group.
        lr: base learning rate, to show the effective lr of groups that carry only
            ``lr_scale``.
        notes: extra remarks to print under the table.

    Example:
        >>> import torch
        >>> from hf_timm_layerdecay import auto_layer_decay
        >>> model = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Linear(2, 2))
        >>> report = layer_decay_report(auto_layer_decay(model, lr=0.1, layer_decay=0.5), model)
        >>> [(row.name, row.lr) for row in report.rows]
        [('layer_0_decay', 0.05), ('layer_0_no_decay', 0.05), ('layer_1_decay', 0.1), ('layer_1_no_decay', 0.1)]
        >>> report.coverage.ok
        True
    """
    source, copies = groups, holds_copies(groups)
    groups = as_group_list(groups)
    check_number("lr", lr, allow_none=True, positive=True)
    if model is not None and not callable(getattr(model, "named_parameters", None)):
        raise TypeError(f"model must be a torch.nn.Module (or None), got {type(model).__name__}")
    notes = [notes] if isinstance(notes, str) else list(notes)
    named = list(model.named_parameters()) if model is not None else []
    names_of = {id(p): n for n, p in named}
    by_name = dict(named)
    rows = []
    for index, group in enumerate(groups):
        params = list(group["params"])
        names = list(group.get("param_names") or [names_of.get(id(p), "?") for p in params])
        if copies and model is not None:  # DeepSpeed ZeRO: the model's parameters, by the names the group carries
            params = [by_name[name] for name in names if name in by_name]
        scale = group.get("scale", group.get("lr_scale"))
        rows.append(
            GroupRow(
                name=str(group.get("name", f"group_{index}")),
                layer_id=group.get("layer_id"),
                layers=list(group.get("merged_layer_ids") or ([] if group.get("layer_id") is None else [group["layer_id"]])),
                scale=None if scale is None else float(scale),
                lr=_effective_lr(group, lr),
                weight_decay=float(group.get("weight_decay", 0.0)),
                tensors=len(params),
                elements=sum(_numel(p) for p in params),
                param_names=names,
            )
        )
    coverage = param_group_coverage(source, model) if model is not None else None
    return LayerDecayReport(rows, coverage, tuple(notes))


def _numel(param: Any) -> int:
    """Elements of a parameter; of the whole one when ZeRO-3 partitioned it (``ds_numel``)."""
    return int(getattr(param, "ds_numel", None) or param.numel())


def _effective_lr(group: dict, base_lr: Optional[float]) -> Optional[float]:
    if "lr" in group:
        return float(group["lr"])
    if base_lr is not None:
        return base_lr * float(group.get("lr_scale", 1.0))
    return None


def _layers(row: GroupRow) -> str:
    if not row.layers:
        return "-"
    return str(row.layers[0]) if len(row.layers) == 1 else f"{row.layers[0]}-{row.layers[-1]}"


def _num(value: Optional[float]) -> str:
    return "-" if value is None else f"{value:.4g}"


def _names(names: list[str], limit: int) -> str:
    if limit <= 0:
        return f"({len(names)} name{'s' if len(names) != 1 else ''})"
    shown = ", ".join(names[:limit])
    return shown + (f", ... (+{len(names) - limit})" if len(names) > limit else "")


def _line(cells: tuple, widths: list[int]) -> str:
    *fixed, last = cells
    return "  ".join(cell.ljust(width) for cell, width in zip(fixed, widths)) + "  " + last
