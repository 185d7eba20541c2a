"""Bad inputs: ``accelerate_optimizer`` (the DeepSpeed config the accelerator runs with, arguments
an ``optimizer`` section would ignore). The accelerator is a stand-in holding what
``accelerate_optimizer`` reads: the DeepSpeed plugin's config and ``register_load_state_pre_hook``
(the real one runs in ``tests/integrations/test_accelerate.py``)."""

from types import SimpleNamespace

import pytest

from bad_cases import Case, error, frozen, ids_of, mlp, mlp_groups, result, run_case, set_workdir
from hf_timm_layerdecay import accelerate_optimizer

AREA = "accelerate_optimizer"

ADAMW = {"optimizer": {"type": "AdamW", "params": {"lr": "auto", "weight_decay": "auto"}}}
ZERO2 = {"zero_optimization": {"stage": 2}}
_SECTION_IGNORES = "the DeepSpeed config has an 'optimizer' section ('AdamW')"
_LOSES = "accelerate_optimizer and this DeepSpeed config:"


class StandIn:
    def __init__(self, config=None):
        self.state = SimpleNamespace(deepspeed_plugin=None if config is None else SimpleNamespace(deepspeed_config=config))
        self.hooks = []

    def register_load_state_pre_hook(self, hook):
        self.hooks.append(hook)


def A(config=None, opt=None, model=None, **kwargs):
    kwargs.setdefault("lr", 1)
    kwargs.setdefault("layer_decay", 0.5)
    return accelerate_optimizer(StandIn(config), mlp() if model is None else model, opt, **kwargs)


def optimizer_of(cls_name):
    def check(optimizer):
        assert type(optimizer).__name__ == cls_name
        mlp_groups()(optimizer.param_groups)

    return check


def dummy_optim(optimizer):
    """A DummyOptim holding the six decayed groups, lr and weight_decay for the section's "auto"."""
    assert type(optimizer).__name__ == "DummyOptim"
    assert (optimizer.lr, optimizer.weight_decay) == (1, 0.05)
    mlp_groups()(optimizer.params)


CASES = [
    Case("acc-no-deepspeed", "an accelerator without DeepSpeed, `opt=\"sgd\", momentum=0.9`",
         lambda: A(opt="sgd", momentum=0.9), result("`create_optimizer`'s SGD: lrs 0.25 / 0.5 / 1.0", optimizer_of("SGD"))),
    Case("acc-zero-no-section", "ZeRO-2, no `optimizer` section", lambda: A(ZERO2),
         result("`create_optimizer`'s AdamW, DeepSpeed's client optimizer", optimizer_of("AdamW"))),
    Case("acc-section", "an `AdamW` section", lambda: A({**ZERO2, **ADAMW}),
         result("a `DummyOptim` holding the groups (lrs 0.25 / 0.5 / 1.0); `lr` and `weight_decay` fill the "
                "section's `\"auto\"`", dummy_optim)),
    Case("acc-section-opt", "an `AdamW` section and `opt=\"sgd\"`", lambda: A(ADAMW, opt="sgd"),
         error(ValueError, _SECTION_IGNORES, "opt='sgd' would be ignored", "remove the section")),
    Case("acc-section-kwargs", "an `AdamW` section and `betas=(0.9, 0.95)`", lambda: A(ADAMW, betas=(0.9, 0.95)),
         error(ValueError, _SECTION_IGNORES, "betas would be ignored")),
    Case("acc-section-lr", "a section with `lr: 3e-4`, `lr=1`",
         lambda: A({"optimizer": {"type": "AdamW", "params": {"lr": 3e-4}}}),
         error(ValueError, "section has lr 0.0003 and accelerate_optimizer got lr=1", "group carries its own lr from 1",
               'Set the section\'s lr to "auto" or 1')),
    Case("acc-section-weight-decay", "a section with `weight_decay: 0.1`, `weight_decay=0.05` (the default)",
         lambda: A({"optimizer": {"type": "AdamW", "params": {"weight_decay": 0.1}}}),
         error(ValueError, "section has weight_decay 0.1 and accelerate_optimizer got weight_decay=0.05",
               'Set the section\'s weight_decay to "auto" or 0.05')),
    Case("acc-section-lr-same", "a section with `lr: 1, weight_decay: 0.05`, `lr=1`",
         lambda: A({"optimizer": {"type": "AdamW", "params": {"lr": 1, "weight_decay": 0.05}}}),
         result("a `DummyOptim` holding the groups", dummy_optim)),
    Case("acc-section-muon", "a `Muon` section", lambda: A({"optimizer": {"type": "Muon"}}),
         error(ValueError, _LOSES, "type 'Muon', which makes parameter groups of its own")),
    Case("acc-scheduler-auto", "a `WarmupLR` section with `warmup_max_lr: \"auto\"`",
         lambda: A({"scheduler": {"type": "WarmupLR", "params": {"warmup_max_lr": "auto"}}}),
         error(ValueError, _LOSES, "warmup_max_lr='auto'", "one lr into every")),
    Case("acc-scheduler-onecycle", "an `AdamW` section and a `OneCycle` section",
         lambda: A({**ADAMW, "scheduler": {"type": "OneCycle"}}), error(ValueError, _LOSES, "'OneCycle' sets absolute lrs")),
    Case("acc-frozen-zero2", "ZeRO-2, `frozen=\"include\"`, the first layer frozen", lambda: A(ZERO2, model=frozen(mlp(), 0), frozen="include"),
         error(ValueError, _LOSES, "ZeRO stage 2 cannot take groups without a trainable parameter", "layer_0_decay")),
    Case("acc-frozen-zero2-section", "the same with an `AdamW` section",
         lambda: A({**ZERO2, **ADAMW}, model=frozen(mlp(), 0), frozen="include"),
         error(ValueError, _LOSES, "ZeRO stage 2 cannot take groups without a trainable parameter")),
    Case("acc-frozen-zero3", "ZeRO-3, `frozen=\"include\"`, the first layer frozen",
         lambda: A({"zero_optimization": {"stage": 3}, **ADAMW}, model=frozen(mlp(), 0), frozen="include"),
         result("a `DummyOptim` holding every group, the frozen layer's too", dummy_optim)),
]


@pytest.mark.parametrize("case", CASES, ids=ids_of(CASES))
def test_bad_input(case, tmp_path):
    set_workdir(tmp_path)
    run_case(case)
