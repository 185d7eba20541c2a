"""Every grouping option in one place: :class:`LayerDecayConfig`.

``auto_layer_decay``'s keyword arguments, ``create_optimizer``'s grouping options, the fields of
``LayerDecayTrainingArguments`` and the flags of ``python -m hf_timm_layerdecay inspect`` are all
read from the fields of :class:`LayerDecayConfig`, and all checked by its :meth:`~LayerDecayConfig.validate`.
A new option is a new field here (with its ``help``, and a ``door`` type when it can be given as
text); every entry point then takes it.

This module imports no framework: the command line reads it to build its parser.
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import math
import numbers
from dataclasses import dataclass, field
from typing import Any, Callable, Literal, Mapping, Optional, Union

from .core.checks import check_flag, check_number
from .core.scales import LayerDecay, LayerDecayError, as_number, check_decay_options
from .core.strategies import PatternRule
from .core.weight_decay import NameMatcher

_GRANULARITIES = ("block", "stage")
_ENCODER_DECODER = ("sequential", "parallel")
_TIED_HEAD = ("head", "embedding")
_MODEL_SPECIFIC = ("encoder_decoder", "tower", "tied_head")
_FROZEN = ("skip", "include")


def _check_choice(what: str, value: object, choices: tuple) -> None:
    if value not in choices:
        raise ValueError(f"{what} must be one of {choices}, got {value!r}")


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
        _check_choice("AutoStrategy.granularity", self.granularity, _GRANULARITIES)
        _check_choice("AutoStrategy.encoder_decoder", self.encoder_decoder, _ENCODER_DECODER)
        _check_choice("AutoStrategy.tied_head", self.tied_head, _TIED_HEAD)
        if self.tower is not None and (not isinstance(self.tower, str) or not self.tower):
            raise ValueError(f"AutoStrategy.tower must be a non-empty string (a tower's name) or None, got {self.tower!r}")


#: ``"auto"`` (the model's adapter, else its structure), ``"structural"`` (structure only),
#: an :class:`AutoStrategy` with options, a callable ``name -> id`` or a ``{regex: id}`` mapping.
Strategy = Union[str, AutoStrategy, Callable[[str], int], PatternRule]
NAMED_STRATEGIES = {"auto": AutoStrategy(), "structural": AutoStrategy(family_adapters=False)}
#: The fields of :class:`AutoStrategy` a config holds flat, so that text-only doors reach them.
_AUTO_FIELDS = ("granularity", "encoder_decoder", "tower", "tied_head")


def check_strategy(strategy: object) -> Strategy:
    """``strategy`` with a name resolved to its :class:`AutoStrategy`; an error for anything that
    is no strategy (checked even where no map is needed, as with ``layer_decay=None``)."""
    if isinstance(strategy, str):
        if strategy not in NAMED_STRATEGIES:
            raise ValueError(
                f"unknown strategy {strategy!r}; use one of {list(NAMED_STRATEGIES)}, an AutoStrategy, "
                "a callable or a mapping"
            )
        return NAMED_STRATEGIES[strategy]
    if not isinstance(strategy, (AutoStrategy, Mapping)) and not callable(strategy):
        raise TypeError(f"strategy must be 'auto', 'structural', an AutoStrategy, a callable or a mapping, got {strategy!r}")
    return strategy


def _option(default: Any, help: str, *, door: Any = None, choices: tuple = (), factory: bool = False) -> Any:
    """A config field. ``door``: the type it has where it is given as text (Trainer arguments,
    command line), or a function text -> value raising ``argparse.ArgumentTypeError`` (both
    parsers take it as the argument's type and report its errors as their own); the richer
    Python values some options take (a callable decay, a rule of one's own) are reachable from
    Python only."""
    metadata = {"help": help, "door": door, "choices": choices}
    if factory:
        return field(default_factory=default, metadata=metadata)
    return field(default=default, metadata=metadata)


def parse_layer_decay(value: object) -> object:
    """``layer_decay`` in its normal form: text (the command line's and the Trainer arguments'
    form) read as a number, ``none`` or ``region=decay`` pairs; a ``{region: decay}`` mapping
    checked (string keys, numbers as values) and reduced to its float when it has only ``"*"``;
    anything else unchanged (checked by :func:`~hf_timm_layerdecay.core.scales.layer_scales`).

    Example:
        >>> parse_layer_decay("0.8"), parse_layer_decay("vision_model=0.9,text_model=0.8")
        (0.8, {'vision_model': 0.9, 'text_model': 0.8})
        >>> parse_layer_decay({"*": 0.7})
        0.7
    """
    if isinstance(value, str):
        text = value.strip()
        if text.lower() == "none":
            return None
        if "=" not in text:
            try:
                return float(text)
            except ValueError:
                raise ValueError(f"layer_decay={value!r} is neither a number nor region=decay pairs "
                                 "(e.g. 'vision_model=0.9,text_model=0.8')") from None
        value = parse_multipliers("layer_decay", [entry for entry in text.split(",") if entry.strip()])
    if not isinstance(value, Mapping):
        return value
    decays = {}
    for region, decay in value.items():
        if not isinstance(region, str) or not region:
            raise LayerDecayError(
                f"layer_decay is a mapping with the key {region!r}: its keys are region names ({{'vision_model': 0.9, "
                "'text_model': 0.8}, '*' for the rest). Per-layer scales indexed by layer id are a sequence "
                "(list(mapping.values()) if the keys are 0..n-1)"
            )
        decay = as_number(decay)
        if isinstance(decay, bool) or not isinstance(decay, numbers.Real):
            raise LayerDecayError(f"layer_decay[{region!r}] must be a number (one decay per region), got {decay!r}")
        decays[region] = float(decay)
    if not decays:
        raise LayerDecayError("layer_decay is an empty mapping; give a float, or {region: decay} for at least one region")
    return decays["*"] if list(decays) == ["*"] else decays


def layer_decay_text(text: str) -> object:
    """:func:`parse_layer_decay` as a parser's argument type: its errors become the parser's."""
    try:
        return parse_layer_decay(text)
    except (TypeError, ValueError) as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


@dataclass(frozen=True)
class LayerDecayConfig:
    """Every option of the grouping, checked once.

    Give it to :func:`~hf_timm_layerdecay.auto_layer_decay` or
    :func:`~hf_timm_layerdecay.create_optimizer` as ``config=``, or pass its fields as keyword
    arguments; ``LayerDecayTrainingArguments`` has each as ``layer_decay_<field>`` and the command
    line as ``--<field>``. Values are checked when the config is made (:meth:`validate`).

    Attributes:
        layer_decay: a float ``d`` (``scale = d ** (num_layers - 1 - layer_id)``), a sequence of
            per-layer scales indexed by layer id, a callable ``layer_id -> scale``, or ``None``
            / ``1.0`` for no layer decay (the plain decay / no-decay pair of groups). Also a
            decay per region, ``{"vision_model": 0.9, "text_model": 0.8}`` (towers, an encoder,
            a decoder: each decay over its region's own depth; ``"*"`` for the parameters outside
            the named regions), see :mod:`~hf_timm_layerdecay.core.regions`; as text
            ``"vision_model=0.9,text_model=0.8"``.
        weight_decay: weight decay of the decayed groups. Biases, parameters with at most one
            dimension and the ``no_weight_decay`` names get 0.
        strategy: how layer ids are found: ``"auto"``, ``"structural"``, an :class:`AutoStrategy`,
            a callable ``canonical name -> id`` or a ``{regex: id}`` mapping (see
            :func:`~hf_timm_layerdecay.layer_ids`).
        granularity, encoder_decoder, tower, tied_head: the options of :class:`AutoStrategy`, for
            ``strategy="auto"`` / ``"structural"`` (given with another strategy: an error).
        min_scale: lower bound of every layer scale.
        normalize_depth: with a float ``layer_decay``, spread the decay so that the stem gets
            ``layer_decay ** normalize_depth`` whatever the model's depth.
        no_weight_decay: extra parameter names, module names or glob patterns excluded from
            weight decay; matched against the reported names and the names without wrapper prefixes.
        model_no_weight_decay: also exclude what the model lists in ``no_weight_decay()`` and the
            position tables and tokens its family adapter recognises.
        allow_decay_above_one: permit a float ``layer_decay > 1`` (lower layers learn faster).
        lr_mult: ``{pattern: multiplier}`` of the lr, on top of the layer scale; patterns as in
            ``no_weight_decay``. Where several match a parameter, the longest pattern wins
            (mmengine's ``custom_keys`` rule), equal lengths by alphabetical order. A pattern
            that matches nothing is a warning. Also ``["pattern=multiplier", ...]``.
        wd_mult: ``{pattern: multiplier}`` of the weight decay of the parameters that have one
            (``{"*.gamma": 0}`` turns it off); the same matching rule.
        head_lr_mult: multiplier of the lr of every parameter at the head's layer id (a freshly
            initialised head often trains at 10-100x), whatever its names; composes with ``lr_mult``.
        loraplus_lr_ratio: LoRA+ (Hayou et al. 2024) on top of the decay: every ``lora_B`` weight
            and every 1-D trainable parameter (DoRA's magnitude, biases) gets this times its
            layer's lr, the ``lora_A`` of the same module its layer's lr; the parameters of
            PEFT's LoRA embedding layers get ``loraplus_lr_embedding``. At ``layer_decay=1.0``
            the lrs are those of ``peft.optimizers.create_loraplus_optimizer``; the weight decay
            keeps this library's rule (PEFT decays 1-D parameters other than norms and biases).
        loraplus_lr_embedding: the lr (absolute, as in PEFT) of LoRA embedding weights under
            LoRA+, times their layer scale; needs ``lr``.
        no_opt_scale: layers whose scale (before ``lr_mult``) is below this are left out of the
            groups, as timm's ``layer_decay_no_opt_scale`` does: a decay of 0.65 over 24 blocks
            gives the stem 3e-5 of the head's lr, an update too small to matter that still costs
            optimizer state. A warning lists the layers left out.
        freeze_no_opt: also set ``requires_grad=False`` on the parameters ``no_opt_scale`` leaves
            out (timm does so always), which saves their gradients too; by default the model is
            not touched.
        frozen: ``"skip"`` (default): parameters with ``requires_grad=False`` are in no group;
            ``"include"``: they join their layer's group, so that unfreezing them later trains
            them at their layer's lr (torch optimizers skip parameters without a gradient).

    Example:
        >>> config = LayerDecayConfig(layer_decay=0.8, lr_mult=["head=10"])
        >>> config.lr_mult, config.auto_strategy()
        ({'head': 10.0}, AutoStrategy(granularity='block', encoder_decoder='sequential', tower=None, tied_head='head', family_adapters=True))
        >>> config.replace(granularity="stage").auto_strategy().granularity
        'stage'
    """

    layer_decay: Optional[LayerDecay] = _option(0.75, "Layer-wise lr decay: layer i gets lr * decay ** (max_id - i); "
                                                "1.0 or None turns it off. Typical: 0.65-0.9. Per region (towers, "
                                                "encoder, decoder): region=decay,... ('*' for the rest).",
                                                door=layer_decay_text)
    weight_decay: float = _option(0.05, "Weight decay of the decayed groups.", door=float)
    strategy: Strategy = _option("auto", "How layer ids are found: 'auto' (model family, else structure) or "
                                 "'structural'.", door=str, choices=tuple(NAMED_STRATEGIES))
    granularity: str = _option("block", "'block': one id per block; 'stage': one id per stage of hierarchical "
                               "models.", door=str, choices=_GRANULARITIES)
    encoder_decoder: str = _option("sequential", "Encoder-decoder models: 'sequential' numbers the decoder after the "
                                   "encoder, 'parallel' each stack by its own depth.", door=str, choices=_ENCODER_DECODER)
    tower: Optional[str] = _option(None, "Models with towers (CLIP, LLaVA): stretch every tower onto this tower's "
                                   "depth (e.g. vision_model).", door=Optional[str])
    tied_head: str = _option("head", "A head tied to the input embedding gets the head's id or the embedding's.",
                             door=str, choices=_TIED_HEAD)
    min_scale: float = _option(0.0, "Lower bound of every layer's lr scale.", door=float)
    normalize_depth: Optional[float] = _option(None, "Give the stem decay ** this, whatever the model's depth "
                                               "(e.g. 12).", door=Optional[float])
    no_weight_decay: tuple[str, ...] = _option(tuple, "Extra parameter names, module names or glob patterns without "
                                               "weight decay.", door=list[str], factory=True)
    model_no_weight_decay: bool = _option(True, "Also exclude the names the model lists in no_weight_decay() and "
                                          "its family's position tables and tokens.", door=bool)
    allow_decay_above_one: bool = _option(False, "Permit layer_decay > 1 (lower layers learn faster).", door=bool)
    lr_mult: Mapping[str, float] = _option(dict, "LR multipliers on top of the layer scale, as pattern=multiplier "
                                           "(e.g. head=10); the longest matching pattern wins.", door=list[str],
                                           factory=True)
    wd_mult: Mapping[str, float] = _option(dict, "Weight-decay multipliers, as pattern=multiplier (e.g. '*.gamma=0'); "
                                           "the longest matching pattern wins.", door=list[str], factory=True)
    head_lr_mult: float = _option(1.0, "LR multiplier of the parameters at the head's layer id.", door=float)
    loraplus_lr_ratio: Optional[float] = _option(None, "LoRA+: lora_B (and 1-D parameters, as PEFT) at this times "
                                                 "their layer's lr (e.g. 16).", door=Optional[float])
    loraplus_lr_embedding: float = _option(1e-6, "LoRA+: the lr of LoRA weights of embedding layers, times their "
                                           "layer scale (PEFT's default 1e-6).", door=float)
    no_opt_scale: Optional[float] = _option(None, "Leave out of the optimizer the layers whose scale is below this "
                                            "(timm's layer_decay_no_opt_scale), with a warning.", door=Optional[float])
    freeze_no_opt: bool = _option(False, "Also set requires_grad=False on what no_opt_scale leaves out.", door=bool)
    frozen: str = _option("skip", "Parameters with requires_grad=False: 'skip' (in no group) or 'include' (in their "
                          "layer's group, trained at its lr once unfrozen).", door=str, choices=_FROZEN)

    def __post_init__(self) -> None:
        set_ = object.__setattr__.__get__(self)  # frozen: the normal forms are set once, here
        if not isinstance(self.layer_decay, str):  # text is read at the text doors only; here it is refused
            set_("layer_decay", parse_layer_decay(self.layer_decay))
        for name in ("layer_decay", "weight_decay", "min_scale", "normalize_depth", "head_lr_mult", "loraplus_lr_ratio",
                     "loraplus_lr_embedding", "no_opt_scale"):
            set_(name, as_number(getattr(self, name)))
        if isinstance(self.no_weight_decay, str):  # a lone string would be read character by character
            set_("no_weight_decay", (self.no_weight_decay,))
        elif self.no_weight_decay is None:
            set_("no_weight_decay", ())
        else:
            set_("no_weight_decay", tuple(self.no_weight_decay))
        set_("lr_mult", parse_multipliers("lr_mult", self.lr_mult))
        set_("wd_mult", parse_multipliers("wd_mult", self.wd_mult))
        self.validate()

    def validate(self) -> None:
        """Raise ``ValueError`` / ``TypeError`` for a value no model could use (made on
        construction; call it again only on a config changed by hand)."""
        check_number("weight_decay", self.weight_decay)
        check_flag("model_no_weight_decay", self.model_no_weight_decay)
        check_flag("allow_decay_above_one", self.allow_decay_above_one)
        for decay in self.layer_decay.values() if isinstance(self.layer_decay, Mapping) else [self.layer_decay]:
            check_decay_options(decay, min_scale=self.min_scale, normalize_depth=self.normalize_depth,
                                allow_decay_above_one=self.allow_decay_above_one)
        strategy = check_strategy(self.strategy)
        AutoStrategy(**{name: getattr(self, name) for name in _AUTO_FIELDS})  # its own checks and messages
        changed = [name for name in _AUTO_FIELDS if getattr(self, name) != _FIELDS[name].default]
        if changed and not isinstance(self.strategy, str):
            kind = "an AutoStrategy" if isinstance(strategy, AutoStrategy) else "a rule of your own"
            raise ValueError(
                f"{', '.join(f'{n}={getattr(self, n)!r}' for n in changed)} given with strategy={self.strategy!r}, "
                f"{kind}: these options belong to strategy='auto' or 'structural'"
                + (" (or set them on the AutoStrategy itself)" if isinstance(strategy, AutoStrategy) else "")
            )
        NameMatcher(self.no_weight_decay)  # strings only
        check_number("head_lr_mult", self.head_lr_mult)
        check_number("loraplus_lr_ratio", self.loraplus_lr_ratio, allow_none=True, positive=True)
        check_number("loraplus_lr_embedding", self.loraplus_lr_embedding)
        if self.loraplus_lr_ratio is None and self.loraplus_lr_embedding != _FIELDS["loraplus_lr_embedding"].default:
            raise ValueError(f"loraplus_lr_embedding={self.loraplus_lr_embedding:g} applies with LoRA+ only: give "
                             "loraplus_lr_ratio too")
        check_number("no_opt_scale", self.no_opt_scale, allow_none=True, positive=True)
        check_flag("freeze_no_opt", self.freeze_no_opt)
        if self.freeze_no_opt and self.no_opt_scale is None:
            raise ValueError("freeze_no_opt=True freezes what no_opt_scale leaves out: give no_opt_scale too")
        _check_choice("frozen", self.frozen, _FROZEN)

    def auto_strategy(self) -> Strategy:
        """The strategy in force: the :class:`AutoStrategy` a name and the flat options make, or
        the strategy as given (an :class:`AutoStrategy`, a callable, a mapping)."""
        if isinstance(self.strategy, str):
            base = NAMED_STRATEGIES[self.strategy]
            return dataclasses.replace(base, **{name: getattr(self, name) for name in _AUTO_FIELDS})
        return self.strategy

    def replace(self, **changes: Any) -> "LayerDecayConfig":
        """A copy with ``changes`` (unknown names are a ``TypeError`` naming the close ones)."""
        _check_names(changes)
        return dataclasses.replace(self, **changes)

    @classmethod
    def from_options(cls, config: Optional["LayerDecayConfig"] = None, **options: Any) -> "LayerDecayConfig":
        """``config`` (default: all defaults) with ``options`` set: the keyword arguments of the
        entry points, checked by name and value."""
        if config is None:
            _check_names(options)
            return cls(**options)
        if not isinstance(config, cls):
            raise TypeError(f"config must be a LayerDecayConfig, got {type(config).__name__}")
        return config.replace(**options) if options else config

    def changed(self) -> dict[str, Any]:
        """The fields set away from their defaults, in field order (for titles and logs)."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if getattr(self, f.name) != _default(f)}


_FIELDS = {f.name: f for f in dataclasses.fields(LayerDecayConfig)}


def option_fields() -> tuple[dataclasses.Field, ...]:
    """The fields of :class:`LayerDecayConfig`, each with ``metadata["help"]``, ``["door"]`` (its
    type as text) and ``["choices"]``: what the Trainer arguments and the command line are made of."""
    return dataclasses.fields(LayerDecayConfig)


def split_options(kwargs: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """``kwargs`` split into layer-decay options (fields of :class:`LayerDecayConfig`) and the
    rest (an optimizer's own arguments), each in the given order.

    Example:
        >>> split_options({"betas": (0.9, 0.95), "layer_decay": 0.8})
        ({'layer_decay': 0.8}, {'betas': (0.9, 0.95)})
    """
    options = {name: value for name, value in kwargs.items() if name in _FIELDS}
    return options, {name: value for name, value in kwargs.items() if name not in _FIELDS}


def option_default(name: str) -> Any:
    """The default of one option."""
    return _default(_FIELDS[name])


def _default(f: dataclasses.Field) -> Any:
    return f.default_factory() if f.default is dataclasses.MISSING else f.default


def _check_names(options: Mapping[str, Any]) -> None:
    unknown = [name for name in options if name not in _FIELDS]
    if unknown:
        close = difflib.get_close_matches(unknown[0], list(_FIELDS), n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise TypeError(f"unknown layer-decay option {unknown[0]!r}{hint} Options: {', '.join(_FIELDS)}")


def parse_multipliers(what: str, entries: object) -> dict[str, float]:
    """``{pattern: multiplier}`` from a mapping or from ``"pattern=multiplier"`` strings (the
    command line's and the Trainer arguments' form); multipliers are finite numbers >= 0.

    Example:
        >>> parse_multipliers("lr_mult", ["head=10", "*.gamma=0.5"])
        {'head': 10.0, '*.gamma': 0.5}
    """
    if entries is None:
        return {}
    if isinstance(entries, str):
        entries = [entries]
    if not isinstance(entries, Mapping):
        pairs = []
        for entry in entries:
            if not isinstance(entry, str) or "=" not in entry:
                raise ValueError(f"{what} entries are pattern=multiplier (e.g. 'head=10'), got {entry!r}")
            pattern, _, value = entry.rpartition("=")
            try:
                pairs.append((pattern.strip(), float(value)))
            except ValueError:
                raise ValueError(f"{what} entry {entry!r}: {value!r} is not a number") from None
        entries = dict(pairs)
    parsed = {}
    for pattern, value in entries.items():
        if not isinstance(pattern, str) or not pattern:
            raise TypeError(f"{what} keys must be non-empty strings (names or glob patterns), got {pattern!r}")
        value = as_number(value)
        if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value) or value < 0:
            raise ValueError(f"{what}[{pattern!r}] must be a finite number >= 0, got {value!r}")
        parsed[pattern] = float(value)
    return parsed
