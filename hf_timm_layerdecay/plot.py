"""Plot what a list of parameter groups does: lr scale and parameter count per layer (matplotlib)."""

from __future__ import annotations

from collections import defaultdict
from typing import Any, Iterable, Optional


def plot_layer_decay(groups: Iterable[dict], title: str = "", axes: Optional[Any] = None) -> Any:
    """Two panels: the lr scale of every layer id (log scale) and its number of parameters.

    Args:
        groups: parameter groups from :func:`~hf_timm_layerdecay.auto_layer_decay` (or an
            optimizer's ``param_groups``); groups without a ``layer_id`` are skipped.
        title: figure title.
        axes: two matplotlib axes to draw into; new ones are made when omitted.

    Returns:
        The matplotlib figure.
    """
    try:
        import matplotlib.pyplot as plt
    except ImportError as exc:  # matplotlib is an optional dependency (extra "notebooks")
        raise ImportError("plotting needs matplotlib: pip install matplotlib") from exc
    scale, elements = {}, defaultdict(int)
    for group in groups:
        layer = group.get("layer_id")
        if layer is None:
            continue
        scale[layer] = group.get("scale", group.get("lr_scale"))
        elements[layer] += sum(int(p.numel()) for p in group["params"])
    layers = sorted(scale)
    if axes is None:
        figure, axes = plt.subplots(1, 2, figsize=(11, 3.6))
    else:
        figure = axes[0].figure
    axes[0].plot(layers, [scale[i] for i in layers], marker="o", ms=3)
    axes[0].set(yscale="log", xlabel="layer id", ylabel="lr scale", title="lr scale per layer")
    axes[1].bar(layers, [elements[i] / 1e6 for i in layers])
    axes[1].set(xlabel="layer id", ylabel="parameters (millions)", title="parameters per layer")
    if title:
        figure.suptitle(title)
    figure.tight_layout()
    return figure
