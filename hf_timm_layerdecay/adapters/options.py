"""Options of the automatic layer map: ``strategy="auto"`` is ``AutoStrategy()``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Optional

_GRANULARITIES = ("block", "stage")
_ENCODER_DECODER = ("sequential", "parallel")


@dataclass(frozen=True)
class AutoStrategy:
    """How ``strategy="auto"`` numbers the layers of a model.

    Attributes:
        granularity: ``"block"`` (default) gives every block its own id; ``"stage"`` one id per
            stage of a hierarchical model (ResNet's ``layer1..4``, a Swin or ConvNeXt stage).
            Models without stages (ViT, BERT) are the same either way.
        encoder_decoder: for models with an encoder and a decoder stack, ``"sequential"``
            (default) numbers the decoder after the encoder, as the forward pass runs them;
            ``"parallel"`` numbers each stack by its own depth, both starting after the
            embeddings.
        tower: for multi-tower models (CLIP, SigLIP, vision-language), ``None`` (default)
            numbers each tower by its own depth; the name of one tower (e.g.
            ``"vision_model"``) numbers every tower on that tower's schedule.
        tied_head: where an output projection tied to the input embedding (one parameter,
            reported under the embedding's name) goes: ``"head"`` or ``"embedding"``.
        family_adapters: use the timm / transformers adapters when the model is one of theirs;
            ``False`` (``strategy="structural"``) uses the module structure alone.

    Example:
        >>> AutoStrategy(granularity="stage")
        AutoStrategy(granularity='stage', encoder_decoder='sequential', tower=None, tied_head='head', family_adapters=True)
    """

    granularity: Literal["block", "stage"] = "block"
    encoder_decoder: Literal["sequential", "parallel"] = "sequential"
    tower: Optional[str] = None
    tied_head: Literal["head", "embedding"] = "head"
    family_adapters: bool = True

    def __post_init__(self) -> None:
        _check_choice("granularity", self.granularity, _GRANULARITIES)
        _check_choice("encoder_decoder", self.encoder_decoder, _ENCODER_DECODER)
        _check_choice("tied_head", self.tied_head, ("head", "embedding"))


def _check_choice(field: str, value: object, choices: tuple) -> None:
    if value not in choices:
        raise ValueError(f"AutoStrategy.{field} must be one of {choices}, got {value!r}")
