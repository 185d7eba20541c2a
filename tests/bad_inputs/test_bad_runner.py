"""The case runner itself: every kind of outcome fails when the call does something else."""

import warnings

import pytest

from bad_cases import Case, equals, error, exits, result, run_case, warning
from hf_timm_layerdecay import LayerDecayError

#: a wrong outcome fails the test: an assertion, pytest.fail, or the unexpected exception itself
FAILED = (AssertionError, pytest.fail.Exception, TypeError)


def _raise(exc):
    def call():
        raise exc

    return call


def _warn(message, value=None):
    def call():
        warnings.warn(message, UserWarning)
        return value

    return call


@pytest.mark.parametrize(
    "case",
    [
        Case("no-error", "", lambda: 1, error(ValueError, "x")),
        Case("other-words", "", _raise(ValueError("lr must be > 0")), error(ValueError, "weight_decay")),
        Case("second-word-missing", "", _raise(ValueError("lr must be > 0")), error(ValueError, "lr", "got 0")),
        Case("subclass-not-exact", "", _raise(LayerDecayError("bad")), error(ValueError, "bad")),
        Case("other-type", "", _raise(TypeError("bad")), error(ValueError, "bad")),
        Case("no-warning", "", lambda: 1, warning(UserWarning, "x")),
        Case("warning-other-words", "", _warn("something else"), warning(UserWarning, "no_weight_decay")),
        Case("warning-check-fails", "", _warn("entries match no parameter", 1), warning(UserWarning, "entries", check=equals(2))),
        Case("result-check-fails", "", lambda: 1, result("", equals(2))),
        Case("result-with-warning", "", _warn("unexpected", 1), result("", equals(1))),
        Case("exit-code", "", lambda: (0, "", ""), exits(2, "error")),
        Case("exit-words", "", lambda: (2, "", "error: other"), exits(2, "lr must")),
        Case("exit-stdout-check", "", lambda: (0, "{}", ""), exits(0, stream="out", check=lambda out: equals("[]")(out))),
    ],
    ids=lambda case: case.id,
)
def test_runner_fails_on_the_wrong_outcome(case):
    with pytest.raises(FAILED):
        run_case(case)


@pytest.mark.parametrize(
    "case",
    [
        Case("error", "", _raise(ValueError("lr must be > 0, got 0")), error(ValueError, "lr must be > 0", "got 0")),
        Case("warning", "", _warn("entries match no parameter", 1), warning(UserWarning, "match no", check=equals(1))),
        Case("result", "", lambda: 1, result("", equals(1))),
        Case("exit", "", lambda: (2, "", "error: lr must be > 0"), exits(2, "lr must")),
    ],
    ids=lambda case: case.id,
)
def test_runner_passes_on_the_right_outcome(case):
    run_case(case)
