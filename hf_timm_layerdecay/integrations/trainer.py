"""Layer-wise learning-rate decay inside the Hugging Face ``Trainer``.

``Trainer`` -> ``LayerDecayTrainer`` and one argument, ``layer_decay``, is the whole change::

    trainer = LayerDecayTrainer(model=model, args=TrainingArguments(...), layer_decay=0.8, ...)

or, from the command line, through :class:`LayerDecayTrainingArguments` and
``HfArgumentParser`` (``--layer_decay 0.8``). Only ``create_optimizer`` changes: the optimizer
class and its arguments still come from ``Trainer.get_optimizer_cls_and_kwargs``, so every
``optim`` / ``optim_args`` the Trainer supports keeps working; the groups it gets carry the real
lr of each layer, so every ``lr_scheduler_type`` keeps the decay. The logged ``learning_rate``
is the head's (the Trainer would log the first group's, the stem's), with
``learning_rate_min`` beside it.
"""

from __future__ import annotations

import logging
import warnings
from collections import OrderedDict
from dataclasses import field, make_dataclass
from typing import Any, Optional

import torch
from torch import nn
from transformers import Trainer, TrainingArguments
from transformers import __version__ as transformers_version

from .._compat import call_create_optimizer, is_optimizer_factory
from ..api import auto_layer_decay
from ..config import LayerDecayConfig, option_default, option_fields, parse_layer_decay
from ..core.lr_ratios import layer_learning_rates, layer_lr_series
from ..core.scales import LayerDecay
from .callbacks import LayerDecayWatchdog
from .deepspeed import refuse_layer_decay_problems
from .resume import guard_resume

logger = logging.getLogger(__name__)

#: get_optimizer_cls_and_kwargs entries of optimizers that build their own parameter groups.
_OWN_GROUPS = ("params", "model", "optimizer_dict")


#: The Trainer argument of each option whose name is not ``layer_decay_<option>``; ``weight_decay``
#: is ``TrainingArguments.weight_decay`` itself.
_ARGUMENT_NAMES = {"layer_decay": "layer_decay", "weight_decay": None, "no_weight_decay": "no_weight_decay_names"}


def argument_name(option: str) -> Optional[str]:
    """The ``LayerDecayTrainingArguments`` field of a :class:`~hf_timm_layerdecay.LayerDecayConfig`
    option (``min_scale`` -> ``layer_decay_min_scale``); ``None`` for ``weight_decay``, which is
    the Trainer's own."""
    return _ARGUMENT_NAMES.get(option, f"layer_decay_{option}")


def _argument_fields() -> list[tuple[str, Any, Any]]:
    """``(name, type, field)`` of every option, for ``make_dataclass``: the config's defaults,
    help and choices, except ``layer_decay``, which is off (``None``) unless given."""
    made = []
    for option in option_fields():
        name = argument_name(option.name)
        if name is None:
            continue
        metadata = {"help": option.metadata["help"]}
        if option.metadata["choices"]:
            metadata["choices"] = list(option.metadata["choices"])
        default = None if option.name == "layer_decay" else option_default(option.name)
        if isinstance(default, (tuple, dict)):  # given as a list of strings here: names, pattern=multiplier
            made.append((name, option.metadata["door"], field(default_factory=list, metadata=metadata)))
        else:
            made.append((name, option.metadata["door"], field(default=default, metadata=metadata)))
    made.append(("log_lr_per_layer", bool,
                 field(default=False, metadata={"help": "Also log learning_rate_layer_<id> for every layer."})))
    return made


def layer_decay_config(args: Any, **changes: Any) -> LayerDecayConfig:
    """The :class:`~hf_timm_layerdecay.LayerDecayConfig` that Trainer arguments hold: each option
    from its ``layer_decay_<option>`` field (the config's default where ``args`` is a plain
    ``TrainingArguments``), ``weight_decay`` from ``args.weight_decay``, then ``changes``."""
    options = {}
    for option in option_fields():
        name = argument_name(option.name)
        if name is not None and hasattr(args, name):
            options[option.name] = getattr(args, name)
    options["weight_decay"] = args.weight_decay
    options.update(changes)
    return LayerDecayConfig(**options)


def _post_init(self: TrainingArguments) -> None:
    TrainingArguments.__post_init__(self)
    self.layer_decay = parse_layer_decay(self.layer_decay)  # text from the parser: a number or region=decay pairs
    # checked here, so that a bad value set in Python (the parser's choices do not guard that)
    # fails before training, not at the first step
    layer_decay_config(self)


LayerDecayTrainingArguments = make_dataclass(
    "LayerDecayTrainingArguments",
    _argument_fields(),
    bases=(TrainingArguments,),
    namespace={"__post_init__": _post_init, "__module__": __name__, "__doc__": """``TrainingArguments`` plus every
    layer-decay option, parsable by ``HfArgumentParser``.

    The fields are made from :class:`~hf_timm_layerdecay.LayerDecayConfig`: ``layer_decay`` (off,
    ``None``, unless given), ``layer_decay_<option>`` for each other option (``layer_decay_min_scale``,
    ``layer_decay_granularity``, ``layer_decay_tower``, ``layer_decay_lr_mult`` as
    ``pattern=multiplier`` strings, ``layer_decay_frozen``, ...), ``no_weight_decay_names``, and
    ``log_lr_per_layer``; ``weight_decay`` is the Trainer's own.

    Example:
        >>> from transformers import HfArgumentParser
        >>> (args,) = HfArgumentParser(LayerDecayTrainingArguments).parse_args_into_dataclasses(
        ...     ["--output_dir", "out", "--layer_decay", "0.8", "--layer_decay_granularity", "stage",
        ...      "--layer_decay_lr_mult", "classifier=10", "--use_cpu"])
        >>> args.layer_decay, args.layer_decay_granularity, args.layer_decay_min_scale, args.layer_decay_lr_mult
        (0.8, 'stage', 0.0, ['classifier=10'])
        >>> layer_decay_config(args).lr_mult
        {'classifier': 10.0}
    """},
)


class LayerDecayMixin:
    """Layer-wise learning-rate decay for any ``transformers.Trainer`` subclass.

    Put it first among the bases, before the Trainer class, so that its ``create_optimizer``
    and ``log`` run first and its ``layer_decay`` keyword is taken before the Trainer's
    ``__init__`` sees the others::

        class SFTTrainerWithDecay(LayerDecayMixin, SFTTrainer):
            pass

        trainer = SFTTrainerWithDecay(model=model, args=args, train_dataset=data, layer_decay=0.8)

    What it changes: ``create_optimizer`` builds the Trainer's own optimizer choice from
    layer-decayed groups (:class:`LayerDecayTrainer`); the logged ``learning_rate`` is the head's;
    a :class:`~hf_timm_layerdecay.integrations.callbacks.LayerDecayWatchdog` warns at the first
    step where the groups' lrs stop following the decay.

    Args:
        layer_decay: the decay; defaults to ``args.layer_decay`` when ``args`` is a
            :class:`LayerDecayTrainingArguments` (read when the optimizer is built, so that
            ``hyperparameter_search`` can search it). ``None``: the subclass unchanged.
        *args, **kwargs: everything the Trainer subclass takes.
    """

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        mro = cls.__mro__
        if Trainer in mro and mro.index(Trainer) < mro.index(LayerDecayMixin):
            raise TypeError(
                f"{cls.__name__}: LayerDecayMixin must come before the Trainer class among the bases "
                f"(class {cls.__name__}(LayerDecayMixin, {next(b.__name__ for b in cls.__bases__ if issubclass(b, Trainer))})), "
                "else the Trainer's create_optimizer runs instead of the mixin's and the decay is lost"
            )

    def __init__(self, *args: Any, layer_decay: Optional[LayerDecay] = None, **kwargs: Any) -> None:
        self._given_layer_decay = layer_decay
        super().__init__(*args, **kwargs)
        if self.layer_decay is not None:
            self.layer_decay_config()  # every option checked now, not at the first step
        else:
            ignored = [argument_name(n) for n in layer_decay_config(self.args).changed() if argument_name(n)
                       and n != "layer_decay"]
            if ignored:
                warnings.warn(
                    f"{', '.join(ignored)} set, but layer_decay is None: {type(self).__name__} then builds the Trainer's "
                    "own optimizer and ignores them. Set layer_decay (1.0 applies the other options without decay)",
                    UserWarning, stacklevel=2,
                )
        if self.layer_decay is not None and self.optimizer is not None:
            raise ValueError(
                f"{type(self).__name__} got layer_decay={self.layer_decay} and a ready optimizer (optimizers=(optimizer, "
                "...)): the Trainer trains with that optimizer as it is, so the decay would be lost. Leave the optimizer "
                "out (the Trainer then builds args.optim with the decay), or build it with "
                "create_optimizer(model, ..., layer_decay=...) and pass it to a plain Trainer"
            )
        if self.layer_decay is not None and self.is_deepspeed_enabled:
            refuse_layer_decay_problems(self._deepspeed_config(), who=f"{type(self).__name__} with "
                                        f"layer_decay={self.layer_decay}")
        if not any(isinstance(c, LayerDecayWatchdog) for c in self.callback_handler.callbacks):
            self.add_callback(LayerDecayWatchdog())

    @property
    def layer_decay(self) -> Optional[LayerDecay]:
        """The decay in force: the ``layer_decay`` given to the Trainer, else ``args.layer_decay``
        as it is now (a hyperparameter search sets it per trial)."""
        from_args = getattr(self.args, "layer_decay", None)
        given = self._given_layer_decay
        if given is not None and from_args is not None and given != from_args:
            raise ValueError(f"layer_decay={given} disagrees with args.layer_decay={from_args}; give one")
        return given if given is not None else from_args

    @layer_decay.setter
    def layer_decay(self, value: Optional[LayerDecay]) -> None:
        if value is not None:
            layer_decay_config(self.args, layer_decay=value)  # checked with the arguments' other options
        self._given_layer_decay = value

    def create_optimizer(self, model: Optional[nn.Module] = None) -> torch.optim.Optimizer:
        """The Trainer's optimizer class and arguments, with layer-decayed parameter groups (with a
        DeepSpeed 'optimizer' section: DeepSpeed's optimizer, from those groups)."""
        if self.layer_decay is not None and type(self.optimizer).__name__ == "DummyOptim":
            return self._groups_for_deepspeed_section(model)
        if self.optimizer is not None or self.layer_decay is None:
            return call_create_optimizer(super().create_optimizer, self, model)
        opt_model = self.model if model is None else model
        optimizer_cls, optimizer_kwargs = self._optimizer_cls_and_kwargs(opt_model)
        if "optimizer_dict" in optimizer_kwargs:
            opt_model, optimizer_kwargs = self._trained_modules(optimizer_kwargs)
        groups = self._layer_decay_groups(opt_model, optimizer_kwargs)
        # The base class builds the optimizer from a "params" entry of these arguments (how GaLore
        # hands it groups) and then does what it does to every optimizer it builds: keep the
        # embeddings of a bitsandbytes 8-bit optimizer in 32 bits, wrap it for SageMaker. Building
        # the optimizer here instead would skip that.
        given = self.optimizer_cls_and_kwargs
        self.optimizer_cls_and_kwargs = (optimizer_cls, {**optimizer_kwargs, "params": groups})
        try:
            optimizer = call_create_optimizer(super().create_optimizer, self, model)
        finally:
            self.optimizer_cls_and_kwargs = given
        if [g.get("name") for g in optimizer.param_groups] != [g["name"] for g in groups]:
            raise RuntimeError(
                f"Trainer.create_optimizer of transformers {transformers_version} did not build the optimizer from "
                "the layer-decay groups; LayerDecayTrainer needs a newer transformers"
            )
        guard_resume(optimizer)
        logger.info(
            "layer decay %s: %d parameter groups, lr %.3g (head) .. %.3g",
            self.layer_decay, len(groups), max(g["lr"] for g in groups), min(g["lr"] for g in groups),
        )
        return optimizer

    def create_scheduler(self, num_training_steps: int, optimizer: Optional[torch.optim.Optimizer] = None) -> Any:
        """The Trainer's scheduler; under DeepSpeed the optimizer is first guarded against resuming
        from a checkpoint with other groups. The Trainer asks for the scheduler once DeepSpeed has
        built the optimizer (from a section, out of ``create_optimizer``'s reach) and before
        ``deepspeed_load_checkpoint``, which would load the checkpoint's groups unchecked."""
        target = self.optimizer if optimizer is None else optimizer
        if (self.layer_decay is not None and self.is_deepspeed_enabled and target is not None
                and type(target).__name__ != "DummyOptim"):
            guard_resume(target)
        return super().create_scheduler(num_training_steps, optimizer)

    def _deepspeed_config(self) -> dict:
        return self.accelerator.state.deepspeed_plugin.hf_ds_config.config

    def _groups_for_deepspeed_section(self, model: Optional[nn.Module]) -> Any:
        """With an 'optimizer' section, transformers hands DeepSpeed an accelerate ``DummyOptim``
        holding the trainable parameters in one list (``deepspeed_optim_sched``), which accelerate
        passes to ``deepspeed.initialize`` as ``model_parameters``; the layer-decay groups go there
        instead, and DeepSpeed builds the section's optimizer from them (the section's lr and
        weight decay are defaults that every group overrides; the section was checked in
        ``__init__`` to be a type that keeps the groups)."""
        opt_model = self.model if model is None else model
        section_lr = (self._deepspeed_config()["optimizer"].get("params") or {}).get("lr")
        lr = section_lr if isinstance(section_lr, (int, float)) else self.args.learning_rate  # "auto": filled later
        groups = self._layer_decay_groups(opt_model, {"lr": lr})
        self.optimizer.params = groups
        logger.info("layer decay %s: %d parameter groups for DeepSpeed's %s", self.layer_decay, len(groups),
                    self._deepspeed_config()["optimizer"].get("type"))
        return self.optimizer

    def _optimizer_cls_and_kwargs(self, model: nn.Module) -> tuple[type, dict]:
        """The Trainer's choice (``optimizer_cls_and_kwargs``, else ``optim``); refused when the
        optimizer makes its own groups (GaLore, LOMO, Muon ...)."""
        if self.optimizer_cls_and_kwargs is not None:
            optimizer_cls, optimizer_kwargs = self.optimizer_cls_and_kwargs
            chosen = f"optimizer_cls_and_kwargs=({getattr(optimizer_cls, '__name__', optimizer_cls)}, ...)"
        else:
            optimizer_cls, optimizer_kwargs = self.get_optimizer_cls_and_kwargs(self.args, model)
            chosen = f"optim={self.args.optim!r}"
        own_groups = [key for key in _OWN_GROUPS if key in optimizer_kwargs]
        # sentence-transformers lists its loss modules' parameters as optimizer_dict (see
        # _trained_modules); a factory is refused there too, since it would ignore our groups
        from_loss_modules = own_groups == ["optimizer_dict"] and _loss_modules(self) is not None
        if is_optimizer_factory(optimizer_cls) or (own_groups and not from_loss_modules):
            raise ValueError(
                f"{chosen} builds its own parameter groups, so layer decay cannot be applied; "
                "choose an optimizer that takes parameter groups (e.g. adamw_torch_fused, adafactor, sgd) "
                "or set layer_decay=None"
            )
        return optimizer_cls, optimizer_kwargs

    def _trained_modules(self, optimizer_kwargs: dict) -> tuple[nn.Module, dict]:
        """sentence-transformers trains its loss modules, which hold the model and weights of their
        own (``SoftmaxLoss``'s classifier), and hands the Trainer their parameters as
        ``optimizer_dict``. The decay is computed over those modules (the loss's own weights run
        after the encoder: the head's id), and the optimizer gets our groups instead."""
        if getattr(self.args, "learning_rate_mapping", None):
            raise ValueError(
                f"learning_rate_mapping={self.args.learning_rate_mapping} sets the lr of the parameters it matches, and "
                f"layer_decay={self.layer_decay} sets the lr of every parameter: give one of them (layer_decay=None keeps "
                "the mapping)"
            )
        modules = _loss_modules(self)
        listed = {id(p) for group in optimizer_kwargs["optimizer_dict"] for p in group["params"]}
        held = {id(p) for p in modules.parameters() if p.requires_grad}
        if listed != held:
            raise ValueError(
                f"{type(self).__name__}.get_optimizer_cls_and_kwargs lists {len(listed)} parameters in 'optimizer_dict', "
                f"but its loss modules hold {len(held)} trainable ones; layer decay can only be computed over modules "
                "that hold exactly what is trained. Set layer_decay=None for this Trainer"
            )
        return modules, {k: v for k, v in optimizer_kwargs.items() if k != "optimizer_dict"}

    def _layer_decay_groups(self, model: nn.Module, optimizer_kwargs: dict) -> list[dict]:
        config = self.layer_decay_config(no_weight_decay=self._no_weight_decay_names(model))
        groups = auto_layer_decay(model, config, lr=optimizer_kwargs.get("lr", self.args.learning_rate))
        if self.is_deepspeed_enabled:
            refuse_layer_decay_problems(self._deepspeed_config(), groups,
                                        who=f"{type(self).__name__} with layer_decay={self.layer_decay}")
        return groups

    def layer_decay_config(self, **changes: Any) -> LayerDecayConfig:
        """The options in force: the arguments' (:func:`layer_decay_config`) with the decay in
        force (:attr:`layer_decay`)."""
        return layer_decay_config(self.args, **{"layer_decay": self.layer_decay, **changes})

    def _no_weight_decay_names(self, model: nn.Module) -> list[str]:
        """What the Trainer would not decay (norms, biases, or a subclass's own rule), plus extras."""
        decayed = set(self.get_decay_parameter_names(model))
        not_decayed = [name for name, _ in model.named_parameters() if name not in decayed]
        return not_decayed + list(getattr(self.args, "no_weight_decay_names", None) or ())

    def log(self, logs: dict[str, float], start_time: Optional[float] = None) -> None:
        """Log the head's lr as ``learning_rate`` and the lowest as ``learning_rate_min``."""
        if "learning_rate" in logs and self.layer_decay is not None and self.optimizer is not None:
            by_layer, series = layer_learning_rates(self.optimizer), layer_lr_series(self.optimizer)
            if series:
                logs["learning_rate"] = by_layer[max(by_layer)] if by_layer else max(series.values())
                logs["learning_rate_min"] = min(series.values())
                if getattr(self.args, "log_lr_per_layer", False):
                    logs.update({f"learning_rate_{name}": lr for name, lr in series.items()})
        super().log(logs, start_time)


def _loss_modules(trainer: Any) -> Optional[nn.Module]:
    """The loss module(s) of a sentence-transformers Trainer, as it optimizes them (a dict of
    losses becomes an ``nn.Sequential`` named by dataset); ``None`` for other Trainers."""
    loss = getattr(trainer, "loss", None)
    if isinstance(loss, dict) and loss and all(isinstance(m, nn.Module) for m in loss.values()):
        return nn.Sequential(OrderedDict(loss))
    return loss if isinstance(loss, nn.Module) else None


class LayerDecayTrainer(LayerDecayMixin, Trainer):
    """A ``Trainer`` whose optimizer applies layer-wise learning-rate decay
    (:class:`LayerDecayMixin` on ``transformers.Trainer``).

    Args:
        layer_decay: the decay; defaults to ``args.layer_decay`` when ``args`` is a
            :class:`LayerDecayTrainingArguments`. ``None``: a plain ``Trainer``.
        *args, **kwargs: everything ``Trainer`` takes.

    Example:
        >>> import tempfile, torch
        >>> from transformers import BertConfig, BertForSequenceClassification, TrainingArguments
        >>> model = BertForSequenceClassification(BertConfig(
        ...     hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=32, vocab_size=50))
        >>> args = TrainingArguments(output_dir=tempfile.mkdtemp(), learning_rate=1e-3, use_cpu=True, report_to=[])
        >>> trainer = LayerDecayTrainer(model=model, args=args, layer_decay=0.5)
        >>> optimizer = trainer.create_optimizer()
        >>> sorted({(g["layer_id"], g["lr"]) for g in optimizer.param_groups})  # embeddings, 2 blocks, head
        [(0, 0.000125), (1, 0.00025), (2, 0.0005), (3, 0.001)]
    """
