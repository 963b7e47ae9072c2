"""Notebooks run as a learner runs them: one twice in the same interpreter (every cell rerun) starts no second
cluster; two at once, in two interpreters, each get a working cluster with its own dashboard port."""

import os
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
for run in range(int(sys.argv[2])):
    for cell in nb.cells:
        if cell.cell_type == "code":
            result = shell.run_cell(cell.source, silent=True)
            if not result.success:
                sys.exit(f"run {run + 1} failed in: {cell.source[:80]!r}: {result.error_in_exec!r}")
    import dml_lesson as dml
    kids = [p for p in psutil.Process().children(recursive=True)
            if "resource_tracker" not in " ".join(p.cmdline())]
    print("PROBE", id(dml.get_client()), len(dml.worker_addresses()), len(kids), dml.dashboard_link(), flush=True)
"""


def start(stem: str, runs: int) -> subprocess.Popen:
    notebook = ROOT / "notebooks" / f"{stem}.ipynb"
    return subprocess.Popen([sys.executable, "-c", SCRIPT, str(notebook), str(runs)], cwd=ROOT / "notebooks",
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "MPLBACKEND": "Agg"})


def finish(proc: subprocess.Popen) -> tuple[list[list[str]], str]:
    """Wait (at most 300 s) for a notebook run; return its PROBE lines and its stderr."""
    try:
        out, err = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err[-2000:] + out[-2000:]
    return [line.split()[1:] for line in out.splitlines() if line.startswith("PROBE")], err


def test_notebook_03_twice_in_one_interpreter():
    probes, _ = finish(start("03_data_on_a_cluster", runs=2))
    assert len(probes) == 2 and probes[0] == probes[1], probes  # same client, same processes
    assert probes[0][1] == "2"


def test_two_notebooks_at_once_each_get_a_cluster_without_a_port_clash():
    procs = [start("03_data_on_a_cluster", runs=1), start("04_distributed_gd", runs=1)]
    results = [finish(p) for p in procs]
    links = [probes[0][3] for probes, _ in results]
    assert all(probes[0][1] == "2" for probes, _ in results)
    assert links[0] != links[1], links  # two dashboards, two ports
    for _, err in results:
        assert "already in use" not in err, err[-2000:]
