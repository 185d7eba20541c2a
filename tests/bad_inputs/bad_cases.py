"""The bad-input suite's case format, its runner and the small models the cases use.

A case is one input and the outcome it must have, written as data so that the same table drives
the test and the docs page (``docs/bad_inputs.md``, made by ``scripts/bad_inputs_table.py``)::

    Case("lr-zero", "`auto_layer_decay(model, lr=0)`",
         lambda: auto_layer_decay(mlp(), lr=0),
         error(ValueError, "lr must be a finite number > 0"))

``call`` takes no argument (use :func:`workdir` for a temporary folder); ``needs`` names an
optional package the case is skipped without. The outcome is one of

* :func:`error` ``(ExceptionType, *words)``: the call raises exactly that type (not a subclass)
  and every word appears in the message;
* :func:`warning` ``(WarningType, *words, says=..., check=...)``: a warning of that type whose
  message holds every word is issued (``warnings.warn``: a log record does not count), and
  ``check(result)``, if given, passes;
* :func:`result` ``(says, check)``: the call returns, ``check(result)`` passes (it asserts
  numbers: lrs, ids, names), and no ``UserWarning`` is issued from this package or the tests;
* :func:`exits` ``(code, *words, stream="err", says=..., check=...)``: the command line
  returns (or exits with) ``code`` and every word appears on stderr (or stdout).

``input`` and the outcome's words (or ``says``) are the two columns of the docs table, so write
``input`` for a reader: the call as a user types it, shortened with ``model`` for the model.
"""

from __future__ import annotations

import contextlib
import functools
import io
import math
import re
import tempfile
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional, Sequence, Union

import pytest
import torch
from torch import nn


# --- outcomes -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Error:
    type: type
    words: tuple[str, ...]

    def describe(self) -> str:
        return f"error `{self.type.__name__}`: {_quoted(self.words)}"


@dataclass(frozen=True)
class Warning_:
    type: type
    words: tuple[str, ...]
    says: str = ""
    check: Optional[Callable[[Any], None]] = None

    def describe(self) -> str:
        text = f"warning `{self.type.__name__}`: {_quoted(self.words)}"
        return f"{text}; {self.says}" if self.says else text


@dataclass(frozen=True)
class Result:
    says: str
    check: Callable[[Any], None]

    def describe(self) -> str:
        return f"result: {self.says}"


@dataclass(frozen=True)
class Exit:
    code: int
    words: tuple[str, ...]
    stream: str = "err"
    says: str = ""
    check: Optional[Callable[[str], None]] = None

    def describe(self) -> str:
        where = "stderr" if self.stream == "err" else "stdout"
        text = f"exit code {self.code}"
        if self.words:
            text += f", {where}: {_quoted(self.words)}"
        return f"{text}; {self.says}" if self.says else text


Outcome = Union[Error, Warning_, Result, Exit]


def error(exc_type: type, *words: str) -> Error:
    assert words, "name the words of the message that say what is wrong"
    return Error(exc_type, words)


def warning(warn_type: type, *words: str, says: str = "", check: Optional[Callable[[Any], None]] = None) -> Warning_:
    assert words, "name the words of the warning"
    return Warning_(warn_type, words, says, check)


def result(says: str, check: Callable[[Any], None]) -> Result:
    return Result(says, check)


def exits(code: int, *words: str, stream: str = "err", says: str = "", check: Optional[Callable[[str], None]] = None) -> Exit:
    assert stream in ("err", "out")
    return Exit(code, words, stream, says, check)


@dataclass(frozen=True)
class Case:
    id: str
    input: str
    call: Callable[[], Any] = field(repr=False)
    expect: Outcome
    needs: str = ""  #: an optional package the case needs (skipped without it), e.g. "matplotlib"


def _quoted(words: Sequence[str]) -> str:
    return " ... ".join(f"“{w}”" for w in words)


# --- the runner -----------------------------------------------------------------------------


def run_case(case: Case) -> None:
    """Call ``case.call`` and assert its outcome (see the module docstring)."""
    if case.needs:
        pytest.importorskip(case.needs)
    expect = case.expect
    if isinstance(expect, Error):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with pytest.raises(expect.type, match=re.escape(expect.words[0])) as caught:
                case.call()
        assert caught.type is expect.type, f"raised {caught.type.__name__}, a subclass of {expect.type.__name__}"
        _assert_words(str(caught.value), expect.words)
    elif isinstance(expect, Warning_):
        with pytest.warns(expect.type) as record:
            value = case.call()
        messages = [str(w.message) for w in record if issubclass(w.category, expect.type)]
        assert any(all(word in m for word in expect.words) for m in messages), (
            f"no {expect.type.__name__} with {expect.words}; got {messages}"
        )
        if expect.check is not None:
            expect.check(value)
    elif isinstance(expect, Result):
        with warnings.catch_warnings(record=True) as record:
            warnings.simplefilter("always")
            value = case.call()
        ours = [w for w in record if issubclass(w.category, UserWarning) and "site-packages" not in w.filename]
        assert not ours, f"unexpected warnings: {[str(w.message) for w in ours]}"
        expect.check(value)
    elif isinstance(expect, Exit):
        code, out, err = case.call()
        assert code == expect.code, f"exit code {code}, expected {expect.code}; stderr: {err[-2000:]}"
        _assert_words(err if expect.stream == "err" else out, expect.words)
        if expect.check is not None:
            expect.check(out)
    else:  # pragma: no cover
        raise TypeError(f"unknown outcome {expect!r}")


def _assert_words(text: str, words: Sequence[str]) -> None:
    missing = [w for w in words if w not in text]
    assert not missing, f"{missing} not in the message: {text!r}"


def ids_of(cases: Sequence[Case]) -> list[str]:
    ids = [c.id for c in cases]
    assert len(ids) == len(set(ids)), f"duplicate case ids: {sorted({i for i in ids if ids.count(i) > 1})}"
    return ids


# --- helpers for calls ------------------------------------------------------------------------

_WORKDIR: Optional[Path] = None


def workdir() -> Path:
    """A fresh temporary folder for the current case (pytest's ``tmp_path`` when run by pytest)."""
    if _WORKDIR is not None:
        return _WORKDIR
    return Path(tempfile.mkdtemp(prefix="bad_inputs_"))


def set_workdir(path: Optional[Path]) -> None:
    global _WORKDIR
    _WORKDIR = path


def cli(*argv: str) -> tuple[int, str, str]:
    """Run ``hf_timm_layerdecay.cli.main(argv)``: (exit code, stdout, stderr); argparse's
    ``SystemExit`` becomes its code."""
    from hf_timm_layerdecay.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(list(argv))
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
    return code, out.getvalue(), err.getvalue()


def quiet(call: Callable[[], Any]) -> Any:
    """``call()`` with warnings silenced (to build inputs, e.g. groups without lr)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return call()


# --- models -------------------------------------------------------------------------------------


def mlp() -> nn.Sequential:
    """Three Linear layers with ReLUs between them: ids 0 (``0.*``), 1 (``2.*``), 2 (``4.*``)."""
    with torch.random.fork_rng(devices=[]):  # seeded, without touching the other tests' random state
        torch.manual_seed(0)
        return nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 2))


def frozen(model: nn.Module, *indices: int) -> nn.Module:
    """``model`` with the parameters of ``model[i]`` frozen, for each ``i``."""
    for index in indices:
        model[index].requires_grad_(False)
    return model


@functools.lru_cache(maxsize=None)
def vit_meta() -> nn.Module:
    """timm's ViT-Tiny/16 with 10 classes on the meta device (14 ids; never mutated by the cases)."""
    import timm

    with torch.device("meta"):
        return timm.create_model("vit_tiny_patch16_224", pretrained=False, num_classes=10)


def tiny_bert():
    """A 2-block BERT classifier: ids 0 (embeddings), 1-2 (blocks), 3 (pooler, classifier)."""
    from transformers import BertConfig, BertForSequenceClassification

    config = BertConfig(
        vocab_size=64, hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=32,
        max_position_embeddings=32, num_labels=2,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return BertForSequenceClassification(config)


# --- checks ---------------------------------------------------------------------------------------


def rows(groups: Sequence[dict]) -> list[tuple]:
    """``(name, lr or lr_scale, weight_decay, param_names)`` of every group."""
    return [(g["name"], g["lr"] if "lr" in g else g["lr_scale"], g["weight_decay"], list(g["param_names"])) for g in groups]


def groups_are(*expected: tuple) -> Callable[[Sequence[dict]], None]:
    """Check that the groups are exactly ``expected``: ``(name, lr, weight_decay, names)`` each,
    lrs compared with a relative tolerance of 1e-12."""

    def check(groups: Sequence[dict]) -> None:
        got = rows(groups)
        assert [r[0] for r in got] == [e[0] for e in expected], got
        for (name, lr, wd, names), want in zip(got, expected):
            assert math.isclose(lr, want[1], rel_tol=1e-12), (name, lr, want[1])
            assert wd == want[2] and names == list(want[3]), (name, wd, names, want)

    return check


def lrs_are(*expected: float) -> Callable[[Sequence[dict]], None]:
    """Check only the per-group lrs (or ``lr_scale``), in order."""

    def check(groups: Sequence[dict]) -> None:
        got = [r[1] for r in rows(groups)]
        assert got == pytest.approx(list(expected), rel=1e-12), got

    return check


def equals(expected: Any) -> Callable[[Any], None]:
    def check(value: Any) -> None:
        assert value == expected, value

    return check


def mlp_groups(lr: float = 1.0, decay: float = 0.5, wd: float = 0.05, prefix: str = "") -> Callable:
    """The six groups of :func:`mlp` at ``lr`` and a float ``decay``."""
    scales = [decay**2, decay, 1.0]
    expected = []
    for layer, index in enumerate((0, 2, 4)):
        expected.append((f"layer_{layer}_decay", lr * scales[layer], wd, [f"{prefix}{index}.weight"]))
        expected.append((f"layer_{layer}_no_decay", lr * scales[layer], 0.0, [f"{prefix}{index}.bias"]))
    return groups_are(*expected)


def two_groups(lr: float = 1.0, wd: float = 0.05) -> Callable:
    """The plain ``decay`` / ``no_decay`` pair of :func:`mlp` (no layer decay)."""
    return groups_are(
        ("decay", lr, wd, ["0.weight", "2.weight", "4.weight"]),
        ("no_decay", lr, 0.0, ["0.bias", "2.bias", "4.bias"]),
    )
