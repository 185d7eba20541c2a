"""``docs/bad_inputs.md`` is the table of the cases in this folder, as generated."""

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _script():
    spec = importlib.util.spec_from_file_location("bad_inputs_table", ROOT / "scripts" / "bad_inputs_table.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_docs_page_is_the_generated_table():
    script = _script()
    committed = (ROOT / "docs" / "bad_inputs.md").read_text()
    assert committed == script.markdown(), (
        "docs/bad_inputs.md differs from the case tables; run: python scripts/bad_inputs_table.py --write"
    )


def test_every_area_has_cases_with_unique_ids():
    areas = _script().load_areas()
    assert len(areas) >= 9
    ids = [(name, case.id) for name, _, cases in areas for case in cases]
    assert len(ids) == len(set(ids))
    assert sum(len(cases) for _, _, cases in areas) >= 150
