"""Every notebook in notebooks/ runs top to bottom in a real kernel without an error.

The quick-start notebook is what ``make start`` opens; its own asserts check
its answers (every result of a map with a crashed worker, once).
"""

import uuid
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from tests.conftest import wait_for
from tests.jupyter.kernel import TAG_VARIABLE, worker_processes

NOTEBOOKS = sorted((Path(__file__).resolve().parents[2] / "notebooks").glob("*.ipynb"))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda path: path.name)
def test_the_notebook_runs_without_an_error_and_leaves_no_worker(path, tmp_path, monkeypatch):
    tag = uuid.uuid4().hex
    monkeypatch.setenv(TAG_VARIABLE, tag)  # the kernel and its workers inherit it
    monkeypatch.setenv("IPYTHONDIR", str(tmp_path / "ipython"))
    notebook = nbformat.read(path, as_version=4)
    NotebookClient(notebook, timeout=300, kernel_name="python3",
                   resources={"metadata": {"path": str(tmp_path)}}).execute()
    errors = [output for cell in notebook.cells for output in cell.get("outputs", [])
              if output.get("output_type") == "error"]
    assert errors == []
    wait_for(lambda: not worker_processes(tag), timeout=30, what="the notebook's workers to exit")
