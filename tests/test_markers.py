"""The ``cluster`` marker tells the truth: the guard in tests/conftest.py fails a test that starts a Dask cluster
without the marker, tests using the cluster fixture and notebooks calling ``get_client()`` are marked, and
``--strict-markers`` is on.

Each check runs a small pytest session of its own (in a subprocess, in a temporary folder holding a copy of
tests/conftest.py), so the failures it provokes are that session's, not this one's.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
import xml.etree.ElementTree as ET
from pathlib import Path

import nbformat
import pytest

TESTS = Path(__file__).resolve().parent
ROOT = TESTS.parent

INNER_TESTS = '''
import distributed
import pytest

import dml_lesson as dml


def test_unmarked_client():
    distributed.Client("tcp://127.0.0.1:1", timeout=1)


def test_unmarked_course_cluster():
    dml.get_client()


def test_unmarked_start_with_the_error_swallowed():
    try:
        distributed.LocalCluster(n_workers=0, processes=False, dashboard_address=None)
    except BaseException:
        pass


def test_unmarked_harmless():
    assert dml.make_regression(10, 1, seed=0).to_numpy()[0].shape == (10, 2)


@pytest.mark.cluster
def test_marked_may_reach_for_a_cluster():
    with pytest.raises(OSError, match="Timed out trying to connect"):
        distributed.Client("tcp://127.0.0.1:1", timeout=1)


def test_uses_the_cluster_fixture(client):
    assert client.status == "running"
'''


def inner_session(folder: Path, *args: str, timeout: float = 240) -> dict[str, str | None]:
    """Run pytest in ``folder`` with the project's markers and conftest: {test name: failure message or None}."""
    markers = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["pytest"]["ini_options"]["markers"]
    (folder / "pytest.ini").write_text("[pytest]\naddopts = -p no:cacheprovider --strict-markers\nmarkers =\n"
                                       + "".join(f"    {m}\n" for m in markers))
    (folder / "conftest.py").write_text((TESTS / "conftest.py").read_text())
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DASK_", "PYTEST_"))}
    env.update(MPLBACKEND="Agg", PYTHONPATH=str(ROOT))
    report = folder / "report.xml"
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", f"--junitxml={report}", *args], cwd=folder,
                          env=env, capture_output=True, text=True, timeout=timeout)
    assert report.exists(), proc.stdout[-3000:] + proc.stderr[-3000:]
    outcomes = {}
    for case in ET.parse(report).iter("testcase"):
        problem = case.find("failure")
        if problem is None:
            problem = case.find("error")
        outcomes[case.get("name")] = None if problem is None else problem.get("message", "") + (problem.text or "")
    return outcomes


def write_notebook(path: Path, *sources: str) -> None:
    nbformat.write(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(s) for s in sources]), path)


def test_strict_markers_is_on(request):
    assert request.config.option.strict_markers


def test_an_unmarked_test_that_starts_a_cluster_fails_and_marked_ones_are_deselected(tmp_path):
    """With ``-m "not cluster"``: each unmarked start fails the test (even with the error swallowed) and nothing is
    started; the test using the ``client`` fixture and the notebook calling ``get_client()`` are deselected; a
    notebook without a cluster runs. Then the marked test may reach for a cluster."""
    (tmp_path / "test_inner.py").write_text(INNER_TESTS)
    write_notebook(tmp_path / "nb_cluster.ipynb", "import dml_lesson as dml", "client = dml.get_client()")
    write_notebook(tmp_path / "nb_plain.ipynb", "x = 1 + 1", "assert x == 2")
    outcomes = inner_session(tmp_path, "-m", "not cluster", "--nbval-lax", "--nbval-current-env")
    guard = "not marked cluster, yet it started a Dask cluster"
    assert set(outcomes) == {"test_unmarked_client", "test_unmarked_course_cluster",
                             "test_unmarked_start_with_the_error_swallowed", "test_unmarked_harmless",
                             "Cell 0", "Cell 1"}, outcomes  # nb_plain's two cells; nb_cluster deselected
    assert "Client()" in outcomes["test_unmarked_client"] and guard in outcomes["test_unmarked_client"]
    assert "LocalCluster()" in outcomes["test_unmarked_course_cluster"]
    assert guard in outcomes["test_unmarked_course_cluster"]
    assert "LocalCluster()" in outcomes["test_unmarked_start_with_the_error_swallowed"]
    assert outcomes["test_unmarked_harmless"] is None
    assert outcomes["Cell 0"] is None and outcomes["Cell 1"] is None
    marked = inner_session(tmp_path, "-m", "cluster", "-k", "marked_may_reach", "test_inner.py")
    assert marked == {"test_marked_may_reach_for_a_cluster": None}


@pytest.mark.cluster
@pytest.mark.slow
def test_an_unmarked_notebook_whose_kernel_starts_a_cluster_fails(tmp_path):
    """A notebook that starts a cluster where the scan for ``get_client(`` cannot see it is not marked: its kernel's
    new worker process fails the cell that started it, and only that cell."""
    write_notebook(tmp_path / "nb_hidden.ipynb", "import dml_lesson as dml",
                   "start = getattr(dml, 'get_' + 'client')\nclient = start(n_workers=1)", "x = 1")
    outcomes = inner_session(tmp_path, "-m", "not cluster", "--nbval-lax", "--nbval-current-env")
    assert outcomes.keys() == {"Cell 0", "Cell 1", "Cell 2"}, outcomes
    assert outcomes["Cell 0"] is None and outcomes["Cell 2"] is None, outcomes
    assert "not marked cluster, yet it started a Dask cluster" in outcomes["Cell 1"]
    assert "spawn_main" in outcomes["Cell 1"]
