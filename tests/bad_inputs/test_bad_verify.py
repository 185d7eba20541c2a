"""Bad inputs: ``hf_timm_layerdecay.verify`` (``first_use_order``, ``order_violations``)."""

import pytest
import torch
from torch import nn

from bad_cases import Case, equals, error, frozen, ids_of, mlp, result, run_case, set_workdir
from hf_timm_layerdecay import layer_ids
from hf_timm_layerdecay.verify import first_use_order, order_violations

AREA = "hf_timm_layerdecay.verify"

ORDER = ["0.weight", "0.bias", "2.weight", "2.bias", "4.weight", "4.bias"]


class _Unused(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.used, self.unused = nn.Linear(2, 2), nn.Linear(2, 2)

    def forward(self, x):
        return self.used(x)


def _run(x):
    return lambda model: model(x)


CASES = [
    Case("order-mlp", "`first_use_order(model, lambda m: m(torch.zeros(1, 4)))`", lambda: first_use_order(mlp(), _run(torch.zeros(1, 4))),
         result("names in the order the forward pass uses them", equals(ORDER))),
    Case("order-unused", "a module the forward pass never calls", lambda: first_use_order(_Unused(), _run(torch.zeros(1, 2))),
         result("its parameters are left out", equals(["used.weight", "used.bias"]))),
    Case("order-frozen", "a frozen model", lambda: first_use_order(frozen(mlp(), 0, 2, 4), _run(torch.zeros(1, 4))),
         result("frozen parameters are recorded too", equals(ORDER))),
    Case("order-run-fails", "`run` that fails (wrong input shape)", lambda: first_use_order(mlp(), _run(torch.zeros(1, 3))),
         error(RuntimeError, "mat1 and mat2 shapes cannot be multiplied")),
    Case("violations-none", "ids that never go down along the order", lambda: order_violations(ORDER, layer_ids(mlp())),
         result("`[]`", equals([]))),
    Case("violations-reversed", "ids reversed (head 0, stem 2)",
         lambda: order_violations(ORDER, {"0.weight": 2, "0.bias": 2, "2.weight": 1, "2.bias": 1, "4.weight": 0, "4.bias": 0}),
         result("one line per parameter used after a higher id",
                equals(["2.weight (id 1) is used after 0.weight (id 2)", "2.bias (id 1) is used after 0.weight (id 2)",
                        "4.weight (id 0) is used after 0.weight (id 2)", "4.bias (id 0) is used after 0.weight (id 2)"]))),
    Case("violations-missing-names", "names in the order that the id map lacks", lambda: order_violations(["a", "x", "c"], {"a": 0, "c": 1}),
         result("skipped: `[]`", equals([]))),
    Case("violations-exempt", "`exempt=lambda name, i: name == \"c\"` for the one offender",
         lambda: order_violations(["a", "b", "c"], {"a": 0, "b": 2, "c": 1}, exempt=lambda name, i: name == "c"), result("`[]`", equals([]))),
    Case("violations-empty", "`order_violations([], {})`", lambda: order_violations([], {}), result("`[]`", equals([]))),
]


@pytest.mark.parametrize("case", CASES, ids=ids_of(CASES))
def test_bad_input(case, tmp_path):
    set_workdir(tmp_path)
    run_case(case)
