"""Build a model by name, without weights: a timm model name, a transformers model type, or a
local ``config.json``. Used by the command line and the coverage scripts; nothing is downloaded.
"""

from __future__ import annotations

import difflib
import json
from pathlib import Path
from typing import TYPE_CHECKING, Optional

if TYPE_CHECKING:  # torch is imported when a model is built: `--help` stays fast
    from torch import nn

#: ``--task`` values and the transformers auto class each builds.
TASKS = {
    "base": "AutoModel",
    "causal-lm": "AutoModelForCausalLM",
    "masked-lm": "AutoModelForMaskedLM",
    "seq2seq-lm": "AutoModelForSeq2SeqLM",
    "sequence-classification": "AutoModelForSequenceClassification",
    "token-classification": "AutoModelForTokenClassification",
    "question-answering": "AutoModelForQuestionAnswering",
    "image-classification": "AutoModelForImageClassification",
}


class ModelNotFound(LookupError):
    """The name is neither a timm model, a transformers model type nor a config file."""


def build_model(name: str, task: Optional[str] = None, device: str = "meta") -> "nn.Module":
    """The model called ``name``, built without pretrained weights on ``device``.

    ``name`` is, in this order: a path to a ``config.json`` (or a folder holding one), a timm
    model name (``timm.list_models()``), or a transformers model type (``"bert"``, ``"llama"``,
    ...) built from its default config. ``task`` picks the transformers head (see :data:`TASKS`);
    by default a config file's ``architectures[0]``, else the base model.
    """
    if task is not None and task not in TASKS:
        raise ValueError(f"unknown task {task!r}; choose one of {', '.join(TASKS)}")
    path = Path(name)
    if path.suffix == ".json" or path.is_dir():
        return _from_config_file(path, task, device)
    import timm

    from ._compat import create_timm_model

    architecture, _, tag = name.partition(".")
    if architecture in timm.list_models():
        if task not in (None, "image-classification"):
            raise ValueError(f"{name} is a timm image model; --task does not apply")
        if tag and name not in timm.list_models(architecture, pretrained=True):
            tags = [t.partition(".")[2] for t in timm.list_models(architecture, pretrained=True)]
            raise ModelNotFound(f"timm has no pretrained tag {tag!r} for {architecture}; its tags: {', '.join(tags) or 'none'}")
        # a tag only picks the configuration (classes, image size): no weights; on the CPU where an
        # old timm cannot build on meta
        return create_timm_model(name, device)
    from transformers import AutoConfig
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING_NAMES

    if name in CONFIG_MAPPING_NAMES:
        return _from_config(AutoConfig.for_model(name), task, device)
    candidates = list(timm.list_models()) + list(CONFIG_MAPPING_NAMES)
    close = difflib.get_close_matches(name.lower(), candidates, n=5, cutoff=0.6)  # every name is lower case
    hint = f" Close matches: {', '.join(close)}." if close else ""
    model_type = _model_type_in(name, CONFIG_MAPPING_NAMES)
    if model_type is not None:
        hint += (
            f" {name!r} looks like a Hugging Face hub id: models are built offline, without downloading; use its "
            f"model type ({model_type!r}) or a local config.json."
        )
    raise ModelNotFound(
        f"unknown model {name!r}.{hint} Give a timm model name (timm.list_models()), a transformers "
        "model type (e.g. bert, llama) or a path to a config.json."
    )


def _model_type_in(name: str, model_types) -> Optional[str]:
    """The transformers model type a hub id starts with (``bert-base-uncased`` -> ``bert``,
    ``meta-llama/Llama-2-7b-hf`` -> ``llama``), else None."""
    last = name.rsplit("/", 1)[-1].lower()
    found = [t for t in model_types if last == t or last.startswith((t + "-", t + "_"))]
    return max(found, key=len) if found else None


def _from_config_file(path: Path, task: Optional[str], device: str) -> "nn.Module":
    from transformers import AutoConfig

    file = path / "config.json" if path.is_dir() else path
    if not file.is_file():
        raise ModelNotFound(f"no config file at {file}")
    try:
        content = json.loads(file.read_text())
        if not isinstance(content, dict):
            raise ValueError("it holds no JSON object")
        config = AutoConfig.from_pretrained(str(file.parent) if file.name == "config.json" else str(file))
    except (OSError, ValueError, KeyError) as exc:
        raise ModelNotFound(
            f"{file} is not a usable transformers config ({type(exc).__name__}: {str(exc).splitlines()[0]}); it needs a "
            "'model_type' that this transformers knows, as saved by config.save_pretrained()"
        ) from None
    architecture = (content.get("architectures") or [None])[0]
    return _from_config(config, task, device, architecture)


def _from_config(config, task: Optional[str], device: str, architecture: Optional[str] = None) -> "nn.Module":
    import torch
    import transformers

    if task is None and architecture and hasattr(transformers, architecture):
        model_cls = getattr(transformers, architecture)
        with torch.device(device):
            return model_cls(config)
    auto_cls = getattr(transformers, TASKS[task or "base"])
    try:
        with torch.device(device):
            return auto_cls.from_config(config)
    except ValueError as exc:  # the model type has no class for that task
        raise ValueError(f"{config.model_type} has no {task or 'base'} model: {exc}") from None
