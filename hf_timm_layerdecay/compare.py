"""Compare our layer-decay groups with timm's own ``param_groups_layer_decay`` on a timm model."""

from __future__ import annotations

from dataclasses import dataclass
from torch import nn

from .api import auto_layer_decay


@dataclass(frozen=True)
class ParamRow:
    """One parameter under both groupings."""

    name: str
    our_layer: int
    our_scale: float
    our_weight_decay: float
    timm_layer: int
    timm_scale: float
    timm_weight_decay: float


@dataclass(frozen=True)
class TimmComparison:
    """Parameter by parameter: our layer id, scale and weight decay against timm's."""

    model: str
    layer_decay: float
    rows: list[ParamRow]

    @property
    def different_scale(self) -> list[ParamRow]:
        return [r for r in self.rows if abs(r.our_scale - r.timm_scale) > 1e-9 * max(r.our_scale, r.timm_scale)]

    @property
    def different_weight_decay(self) -> list[ParamRow]:
        return [r for r in self.rows if r.our_weight_decay != r.timm_weight_decay]

    def table(self) -> str:
        """Per layer of ours: our scale, the timm layers and scales of the same parameters."""
        lines = [
            f"{self.model}: layer_decay={self.layer_decay}",
            f"  layer ids: ours {len({r.our_layer for r in self.rows})}, timm {len({r.timm_layer for r in self.rows})}",
            f"  parameters with another lr scale: {len(self.different_scale)} of {len(self.rows)}",
            f"  parameters with another weight decay: {len(self.different_weight_decay)} of {len(self.rows)}",
            "",
            f"{'ours':>5}  {'scale':>9}  {'timm ids':>9}  {'timm scale':>17}  {'tensors':>7}  first parameter",
        ]
        for layer in sorted({r.our_layer for r in self.rows}):
            rows = [r for r in self.rows if r.our_layer == layer]
            timm_ids = sorted({r.timm_layer for r in rows})
            timm_scales = sorted({r.timm_scale for r in rows})
            ids_text = f"{timm_ids[0]}" if len(timm_ids) == 1 else f"{timm_ids[0]}-{timm_ids[-1]}"
            scale_text = (
                f"{timm_scales[0]:.4g}" if len(timm_scales) == 1 else f"{timm_scales[0]:.3g}..{timm_scales[-1]:.3g}"
            )
            mark = "" if not any(r in self.different_scale for r in rows) else "  <- differs"
            lines.append(
                f"{layer:5d}  {rows[0].our_scale:9.4g}  {ids_text:>9}  {scale_text:>17}  {len(rows):7d}  {rows[0].name}{mark}"
            )
        for row in self.different_weight_decay[:10]:
            lines.append(f"weight decay differs: {row.name}: ours {row.our_weight_decay:g}, timm {row.timm_weight_decay:g}")
        lines.append(
            "note: timm's groups carry only lr_scale, which timm's schedulers apply; torch.optim and transformers "
            "schedulers ignore it. Ours carry the real lr."
        )
        return "\n".join(lines)


def compare_with_timm(
    model: nn.Module, name: str = "", layer_decay: float = 0.75, weight_decay: float = 0.05
) -> TimmComparison:
    """Group ``model`` both ways and pair every parameter's layer, scale and weight decay.

    timm's side is exactly what ``timm.optim.create_optimizer_v2(model, layer_decay=...)`` uses:
    ``param_groups_layer_decay`` with the model's ``no_weight_decay()`` list.
    """
    from timm.optim import param_groups_layer_decay

    listed = model.no_weight_decay() if hasattr(model, "no_weight_decay") else ()
    timm_groups = param_groups_layer_decay(
        model, weight_decay=weight_decay, no_weight_decay_list=listed, layer_decay=layer_decay
    )
    timm_ids = timm_layer_map(model)
    top = max(timm_ids.values(), default=0)
    timm_of = {id(p): (g["lr_scale"], g["weight_decay"]) for g in timm_groups for p in g["params"]}
    ours = auto_layer_decay(model, lr=1.0, layer_decay=layer_decay, weight_decay=weight_decay)
    our_of = {id(p): (g["layer_id"], g["scale"], g["weight_decay"]) for g in ours for p in g["params"]}
    rows = []
    for param_name, param in model.named_parameters():
        if id(param) not in our_of:
            continue
        layer, scale, wd = our_of[id(param)]
        timm_scale, timm_wd = timm_of[id(param)]
        rows.append(ParamRow(param_name, layer, scale, wd, timm_ids.get(param_name, top), timm_scale, timm_wd))
    return TimmComparison(name or type(model).__name__, layer_decay, rows)


def timm_layer_map(model: nn.Module) -> dict[str, int]:
    """timm's own layer ids, from the same functions ``param_groups_layer_decay`` calls."""
    from timm.models import group_parameters
    from timm.optim import auto_group_layers

    if hasattr(model, "group_matcher"):
        return group_parameters(model, model.group_matcher(coarse=False), reverse=True)
    return auto_group_layers(model)
