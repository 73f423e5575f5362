"""docs/sdk.ipynb runs top to bottom in a fresh kernel, and says what a reader expects it to say."""

from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOK = Path(__file__).parents[2] / "docs" / "sdk.ipynb"


def _text(cell) -> str:
    parts = []
    for output in cell.get("outputs", []):
        parts.append(output.get("text", ""))
        parts.append(output.get("data", {}).get("text/plain", ""))
    return "".join(parts)


@pytest.mark.slow
def test_the_sdk_notebook_places_an_order_and_reads_its_report_and_model(tmp_path):
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    # The kernel is a process of its own (its Prefect an ephemeral server), in a fresh directory.
    NotebookClient(notebook, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    code = [c for c in notebook.cells if c.cell_type == "code"]
    assert all(not any(o.get("output_type") == "error" for o in c.outputs) for c in code)
    status = _text(code[1])
    assert "settled (accepted), model delivered" in status
    assert "work verdict: accepted" in _text(code[2])
    assert "spot-steps" in _text(code[3]) and "model report" in _text(code[3])
    assert "(10, 64)" in _text(code[4])  # the output layer: 10 digit classes
    assert (tmp_path / "model.pt").is_file() and (tmp_path / ".bahen-notebook" / "orders").is_dir()
