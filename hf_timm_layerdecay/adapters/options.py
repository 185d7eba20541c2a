"""Options of the automatic layer map: ``strategy="auto"`` is ``AutoStrategy()``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Optional

_GRANULARITIES = ("block", "stage")
_ENCODER_DECODER = ("sequential", "parallel")
_MODEL_SPECIFIC = ("encoder_decoder", "tower", "tied_head")


@dataclass(frozen=True)
class AutoStrategy:
    """How ``strategy="auto"`` numbers the layers of a model.

    Attributes:
        granularity: ``"block"`` (default) gives every block its own id; ``"stage"`` one id per
            stage of a hierarchical model (ResNet's ``layer1..4``, a Swin or ConvNeXt stage).
            Models without stages (ViT, BERT) are the same either way.
        encoder_decoder: for models with an encoder and a decoder stack (T5, BART, Whisper, DETR),
            ``"sequential"`` (default) numbers the decoder after the encoder, as the forward pass
            runs them (the encoder's final norm joins its last block, the decoder's goes to the
            head); ``"parallel"`` numbers each stack by its own depth, both starting after the
            embeddings (id 1), so that block ``k`` of either gets the same learning rate.
        tower: for models with towers side by side (sub-models with configs of their own: CLIP,
            SigLIP, BLIP-2, LLaVA-like vision-language and audio-text models), ``None``
            (default) numbers each tower by its own depth from id 1: block ``k`` of every tower
            gets the same id and the head is one past the deepest tower. The name of one tower
            (its module path, or its last part: ``"vision_model"``, ``"language_model"``)
            stretches every tower onto that tower's depth, so that each spans the same ids from
            the embeddings to the head (a 12-block text tower beside a 24-block vision tower
            then gets ids 2, 4, ..., 24). A name that is no tower of the model is an error.
        tied_head: where an output projection tied to the input embedding goes (``lm_head.weight``
            *is* ``embed_tokens.weight``: one parameter, reported under the embedding's name):
            ``"head"`` (default) gives it the head's id, ``"embedding"`` the embedding's (0).
            A tied language-model head trained at the embedding's decayed learning rate adapts
            far less; the measurement behind the default is in ``docs/transformers_coverage.md``.
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

    def model_specific(self) -> frozenset[str]:
        """The options set away from their defaults that only some model families read
        (``tower``, ``encoder_decoder``, ``tied_head``)."""
        defaults = AutoStrategy.__dataclass_fields__
        return frozenset(k for k in _MODEL_SPECIFIC if getattr(self, k) != defaults[k].default)

    def __post_init__(self) -> None:
        if not isinstance(self.family_adapters, bool):
            raise TypeError(f"AutoStrategy.family_adapters must be True or False, got {self.family_adapters!r}")
        _check_choice("granularity", self.granularity, _GRANULARITIES)
        _check_choice("encoder_decoder", self.encoder_decoder, _ENCODER_DECODER)
        _check_choice("tied_head", self.tied_head, ("head", "embedding"))
        if self.tower is not None and (not isinstance(self.tower, str) or not self.tower):
            raise ValueError(f"AutoStrategy.tower must be a non-empty string (a tower's name) or None, got {self.tower!r}")


def _check_choice(field: str, value: object, choices: tuple) -> None:
    if value not in choices:
        raise ValueError(f"AutoStrategy.{field} must be one of {choices}, got {value!r}")
