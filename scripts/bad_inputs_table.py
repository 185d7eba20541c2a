"""Print (or ``--write``) ``docs/bad_inputs.md``: the table of the bad-input suite's cases.

The rows come from the ``CASES`` lists of ``tests/bad_inputs/test_bad_*.py``, one table per
module (its ``AREA``), so the page says exactly what the tests check. A test
(``tests/bad_inputs/test_bad_docs_page.py``) fails when the committed page differs.

    python scripts/bad_inputs_table.py --write     # regenerate docs/bad_inputs.md
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CASES_DIR = ROOT / "tests" / "bad_inputs"
PAGE = ROOT / "docs" / "bad_inputs.md"

#: Order of the areas on the page; modules not listed follow in name order.
ORDER = [
    "test_bad_silent", "test_bad_run_order", "test_bad_api", "test_bad_decay", "test_bad_strategy",
    "test_bad_optimizer", "test_bad_accelerate", "test_bad_report", "test_bad_seed", "test_bad_verify", "test_bad_trainer", "test_bad_cli",
]

HEADER = """\
# Bad inputs: what is guarded

What the library does with inputs that are wrong or unusual: the exact error (its type and the
words of its message), the warning (`warnings.warn`, visible by default), or the result it
computes instead. Every row is a test case of `tests/bad_inputs/`; this page is generated from
those tables by `python scripts/bad_inputs_table.py --write` and a test fails when the two
differ. In the inputs, `model` is a small model of the tests (mostly a 3-layer MLP, whose layer
ids are 0, 1 and 2) and lrs are given for `lr=1` unless the row says otherwise.

To add a row: append a `Case(id, input, call, outcome)` to the `CASES` list of the area's
`tests/bad_inputs/test_bad_*.py` (the outcome is `error(Type, *words)`,
`warning(Type, *words, says=..., check=...)`, `result(says, check)` or, for the command line,
`exits(code, *words, ...)`; see `tests/bad_inputs/bad_cases.py`), run the tests, then
regenerate this page.
"""


def load_areas() -> list:
    """``[(module name, area title, cases)]`` in page order."""
    for path in (CASES_DIR, CASES_DIR.parent):
        if str(path) not in sys.path:
            sys.path.insert(0, str(path))
    found = sorted(p.stem for p in CASES_DIR.glob("test_bad_*.py"))
    names = [n for n in ORDER if n in found] + [n for n in found if n not in ORDER]
    areas = []
    for name in names:
        module = importlib.import_module(name)
        if hasattr(module, "CASES"):
            areas.append((name, module.AREA, module.CASES))
    return areas


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def markdown() -> str:
    areas = load_areas()
    kinds = Counter(type(case.expect).__name__.rstrip("_") for _, _, cases in areas for case in cases)
    total = sum(kinds.values())
    lines = [HEADER]
    lines.append(
        f"{total} cases: {kinds['Error']} errors, {kinds['Warning']} warnings, {kinds['Result']} results, "
        f"{kinds['Exit']} command-line exits.\n"
    )
    for name, area, cases in areas:
        lines.append(f"## {area}\n")
        lines.append(f"`tests/bad_inputs/{name}.py`, {len(cases)} cases.\n")
        lines.append("| case | input | what happens |")
        lines.append("| --- | --- | --- |")
        for case in cases:
            needs = f" (needs `{case.needs}`)" if getattr(case, "needs", "") else ""
            lines.append(f"| `{case.id}` | {_cell(case.input)}{needs} | {_cell(case.expect.describe())} |")
        lines.append("")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", action="store_true", help=f"write {PAGE.relative_to(ROOT)} instead of printing")
    args = parser.parse_args(argv)
    text = markdown()
    if args.write:
        PAGE.write_text(text)
        print(f"wrote {PAGE.relative_to(ROOT)}", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
