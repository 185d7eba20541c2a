"""The notebooks in notebooks/ run from top to bottom (nbclient), as committed.

The notebooks check the facts they show with ``assert`` cells (ratios kept by schedulers, the
post's table reproduced, the lrs the Trainer logged per layer), so running them is a test; the
fine-tuning notebook takes about eleven minutes on a 2-core CPU.
"""

from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOKS = sorted((Path(__file__).resolve().parents[2] / "notebooks").glob("*.ipynb"))


def test_there_are_notebooks():
    assert [p.name[:2] for p in NOTEBOOKS] == ["01", "02", "03", "04"]


#: the fine-tuning notebook trains nine times (minutes, on both cores): marked long, run alone
LONG = {"03_finetuning_with_layer_decay"}


@pytest.mark.parametrize(
    "path", [pytest.param(p, marks=[pytest.mark.long] if p.stem in LONG else []) for p in NOTEBOOKS], ids=[p.stem for p in NOTEBOOKS]
)
def test_notebook_runs(path):
    notebook = nbformat.read(path, as_version=4)
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert all(cell.execution_count for cell in code) and any(cell.outputs for cell in code), "committed unexecuted"
    client = NotebookClient(notebook, timeout=1800, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}})
    client.execute()  # raises CellExecutionError, with the failing cell, on any error
    errors = [o for cell in notebook.cells if cell.cell_type == "code" for o in cell.outputs if o.output_type == "error"]
    assert not errors
