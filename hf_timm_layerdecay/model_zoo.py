"""Build a model by name, without weights: a timm model name, a transformers model type, or a
local ``config.json``. Used by the command line and the coverage scripts; nothing is downloaded.
"""

from __future__ import annotations

import difflib
import json
from pathlib import Path
from typing import Optional

import torch
from torch import nn

from ._compat import create_timm_model

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


def build_model(name: str, task: Optional[str] = None, device: str = "meta") -> nn.Module:
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

    if name in timm.list_models():
        if task not in (None, "image-classification"):
            raise ValueError(f"{name} is a timm image model; --task does not apply")
        return create_timm_model(name, device)  # on the CPU where an old timm cannot build on meta
    from transformers import AutoConfig
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING_NAMES

    if name in CONFIG_MAPPING_NAMES:
        return _from_config(AutoConfig.for_model(name), task, device)
    candidates = list(timm.list_models()) + list(CONFIG_MAPPING_NAMES)
    close = difflib.get_close_matches(name, candidates, n=5, cutoff=0.6)
    hint = f" Close matches: {', '.join(close)}." if close else ""
    raise ModelNotFound(
        f"unknown model {name!r}.{hint} Give a timm model name (timm.list_models()), a transformers "
        "model type (e.g. bert, llama) or a path to a config.json."
    )


def _from_config_file(path: Path, task: Optional[str], device: str) -> nn.Module:
    from transformers import AutoConfig

    file = path / "config.json" if path.is_dir() else path
    if not file.is_file():
        raise ModelNotFound(f"no config file at {file}")
    config = AutoConfig.from_pretrained(str(file.parent) if file.name == "config.json" else str(file))
    architecture = (json.loads(file.read_text()).get("architectures") or [None])[0]
    return _from_config(config, task, device, architecture)


def _from_config(config, task: Optional[str], device: str, architecture: Optional[str] = None) -> nn.Module:
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
