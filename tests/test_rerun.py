"""A notebook run twice in the same interpreter (as a learner who reruns every cell) still works, and starts
no second cluster."""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.cluster

SCRIPT = """
import os, sys
import nbformat, psutil
from IPython.terminal.interactiveshell import TerminalInteractiveShell

shell = TerminalInteractiveShell.instance()
nb = nbformat.read(sys.argv[1], as_version=4)
for run in range(2):
    for cell in nb.cells:
        if cell.cell_type == "code":
            result = shell.run_cell(cell.source, silent=True)
            if not result.success:
                sys.exit(f"run {run + 1} failed in: {cell.source[:80]!r}: {result.error_in_exec!r}")
    import dml_lesson as dml
    kids = [p for p in psutil.Process().children(recursive=True)
            if "resource_tracker" not in " ".join(p.cmdline())]
    print("PROBE", id(dml.get_client()), len(dml.worker_addresses()), len(kids), flush=True)
"""


def test_notebook_03_twice_in_one_interpreter():
    notebook = ROOT / "notebooks" / "03_data_on_a_cluster.ipynb"
    out = subprocess.run([sys.executable, "-c", SCRIPT, str(notebook)], cwd=ROOT / "notebooks",
                         capture_output=True, text=True, timeout=300, env={**__import__("os").environ,
                                                                           "MPLBACKEND": "Agg"})
    assert out.returncode == 0, out.stderr[-2000:] + out.stdout[-2000:]
    probes = [line.split()[1:] for line in out.stdout.splitlines() if line.startswith("PROBE")]
    assert len(probes) == 2 and probes[0] == probes[1], probes  # same client, same processes
    assert probes[0][1] == "2"
