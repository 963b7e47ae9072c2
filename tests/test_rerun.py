"""A notebook run twice in the same kernel still works, and starts no second cluster."""

from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.cluster


def test_notebook_03_twice_in_one_kernel():
    nb = nbformat.read(ROOT / "notebooks" / "03_data_on_a_cluster.ipynb", as_version=4)
    probe = nbformat.v4.new_code_cell(
        "import os, psutil\n"
        "import dml_lesson as dml\n"
        "kids = [p for p in psutil.Process(os.getpid()).children(recursive=True)"
        " if 'resource_tracker' not in ' '.join(p.cmdline())]\n"
        "print(id(dml.get_client()), len(dml.worker_addresses()), len(kids))"
    )
    nb.cells.append(probe)
    runner = NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(ROOT)}})
    seen = []
    with runner.setup_kernel():
        for _ in range(2):
            for index, cell in enumerate(nb.cells):
                if cell.cell_type == "code":
                    runner.execute_cell(cell, index)  # raises CellExecutionError on any error
            seen.append(nb.cells[-1].outputs[0]["text"].split())
    assert seen[0] == seen[1], "the second run used another client or started more processes"
    assert seen[0][1] == "2"
