"""Shared fixtures: one course cluster for the whole session, the ``cluster`` marker kept true, and a check that no
process outlives the session.

The ``cluster`` marker: ``pytest -m "not cluster"`` starts no Dask cluster.

* A test that uses a fixture starting the course's cluster (:data:`CLUSTER_FIXTURES`, directly or through another
  fixture) is marked ``cluster`` at collection. A test that starts a cluster another way (a ``LocalCluster`` of
  its own, ``dask scheduler``/``dask worker`` processes, a subprocess calling ``get_client()``) carries the marker
  itself (``@pytest.mark.cluster`` or its module's ``pytestmark``).
* Every cell of a notebook whose code starts a cluster (:data:`NOTEBOOK_STARTS_CLUSTER`) is marked ``cluster``:
  nbval runs a notebook's cells in one kernel, one after the other, so a notebook is selected whole or not at all.
  This file is read when tests/ is collected, as in the default run (``testpaths`` holds tests and notebooks):
  ``pytest -m "not cluster"`` runs the notebooks without a cluster (01, 02) and deselects the others, but
  ``pytest notebooks`` alone does not read this file, so there the marker selects no notebook cell.
* The guard: while a test that is not marked ``cluster`` is set up and runs, constructing a ``distributed.Client``,
  ``LocalCluster``, ``SpecCluster`` or ``Scheduler`` in this process fails the test (at once, and again at the end
  of the phase if the test swallowed the error), and so does a Dask process that appeared meanwhile and is still
  running: a scheduler or worker started from the command line, or a worker spawned by a nanny that does not run in
  this process (a notebook's kernel, a subprocess). Workers that the session's own cluster respawns (children of this
  process, after a fault test) are not counted. tests/test_markers.py proves the guard fails such tests.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import re
import time
from collections.abc import Iterator
from pathlib import Path

import distributed
import psutil
import pytest

import dml_lesson as dml

CLUSTER_FIXTURES = frozenset({"client"})
"""Fixtures that start (or hand out) the course's Dask cluster: a test using one is a ``cluster`` test."""

NOTEBOOK_STARTS_CLUSTER = re.compile(r"\b(?:get_client|Client|LocalCluster|SpecCluster)\(")
"""Code in a notebook that starts a Dask cluster (or connects to one); other starts are caught by the guard."""

GUARDED = (distributed.Client, distributed.LocalCluster, distributed.SpecCluster, distributed.Scheduler)
"""Classes a test not marked ``cluster`` may not construct."""

DASK_PROCESS = re.compile(r"spawn_main|distributed\.cli\.dask_(?:scheduler|worker)|\bdask[- ](?:scheduler|worker)\b")
"""Command lines of Dask processes: a nanny's worker (multiprocessing spawn), a scheduler or worker from the CLI."""

GUARD_MESSAGE = "not marked cluster, yet it started a Dask cluster"


@pytest.fixture(scope="session")
def client():
    """The course's shared client (a 2-worker LocalCluster on 127.0.0.1), closed at the end."""
    c = dml.get_client()
    yield c
    dml.close_client()


@pytest.fixture(scope="session")
def small():
    """A small regression dataset as dask arrays (16 blocks) and as numpy."""
    X, y, w_true = dml.make_regression(400, 3, noise=0.1, seed=7)
    Xn, yn = dml.to_numpy(X, y)
    return X, y, Xn, yn, w_true


# -- the cluster marker ---------------------------------------------------------------------------------------------

@pytest.hookimpl(tryfirst=True)  # before ``-m`` deselects by marker
def pytest_collection_modifyitems(config, items):
    """Mark ``cluster`` the tests that use a cluster fixture and the cells of notebooks that start a cluster."""
    notebooks: dict[Path, bool] = {}
    for item in items:
        if item.path.suffix == ".ipynb":
            if item.path not in notebooks:
                notebooks[item.path] = notebook_starts_cluster(item.path)
            if notebooks[item.path]:
                item.add_marker(pytest.mark.cluster)
        elif CLUSTER_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.cluster)


def notebook_starts_cluster(path: Path) -> bool:
    """True when a code cell of the notebook at ``path`` calls ``get_client(`` (or builds a client or cluster)."""
    cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
    return any(NOTEBOOK_STARTS_CLUSTER.search("".join(c["source"])) for c in cells if c["cell_type"] == "code")


@pytest.hookimpl(wrapper=True)
def pytest_runtest_setup(item):
    with no_cluster_started(item, "setup"):
        return (yield)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item):
    with no_cluster_started(item, "call"):
        return (yield)


@contextlib.contextmanager
def no_cluster_started(item: pytest.Item, phase: str) -> Iterator[None]:
    """For a test not marked ``cluster``: fail it if a Dask cluster or client is started during ``phase``."""
    if item.get_closest_marker("cluster") is not None:
        yield
        return
    started: list[str] = []
    before = dask_processes()
    with pytest.MonkeyPatch.context() as mp:
        for cls in GUARDED:
            mp.setattr(cls, "__init__", _refused(cls, started, item.nodeid))
        yield
    new = {key: line for key, line in dask_processes().items() if key not in before}
    if started or new:
        what = started + [f"process {pid}: {line[:120]}" for (pid, _), line in new.items()]
        pytest.fail(f"{item.nodeid} is {GUARD_MESSAGE} during {phase}: {'; '.join(what)}. Mark it "
                    "@pytest.mark.cluster, or keep it off the cluster", pytrace=False)


def _refused(cls: type, started: list[str], nodeid: str):
    original = cls.__init__

    @functools.wraps(original)
    def __init__(self, *args, **kwargs):
        started.append(f"{cls.__module__}.{cls.__qualname__}()")
        pytest.fail(f"{nodeid} is {GUARD_MESSAGE}: {cls.__qualname__}() constructed. Mark it @pytest.mark.cluster, "
                    "or keep it off the cluster")

    return __init__


def dask_processes() -> dict[tuple[int, float], str]:
    """Running Dask processes among this process's descendants, by (pid, start time): command-line schedulers and
    workers, and nanny-spawned workers except this process's own children (the session cluster's workers)."""
    me, found = os.getpid(), {}
    for proc in psutil.Process().children(recursive=True):
        try:
            line = " ".join(proc.cmdline())
            if not DASK_PROCESS.search(line) or ("spawn_main" in line and proc.ppid() == me):
                continue
            if proc.status() != psutil.STATUS_ZOMBIE:
                found[(proc.pid, proc.create_time())] = line
        except psutil.Error:
            continue
    return found


# -- nothing left behind --------------------------------------------------------------------------------------------

def pytest_sessionfinish(session, exitstatus):
    """Fail the run if a scheduler, worker or kernel process is still alive after the session."""
    dml.close_client()
    deadline = time.monotonic() + 15
    children = [p for p in psutil.Process().children(recursive=True) if not _is_resource_tracker(p)]
    while children and time.monotonic() < deadline:
        time.sleep(0.2)
        children = [p for p in children if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    if children:
        names = ", ".join(f"{p.pid} {' '.join(p.cmdline())[:80]}" for p in children)
        print(f"\nleftover processes after the test session: {names}")
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def _is_resource_tracker(proc: psutil.Process) -> bool:
    """multiprocessing's resource tracker lives exactly as long as this process: not a leak."""
    try:
        return "multiprocessing.resource_tracker" in " ".join(proc.cmdline())
    except psutil.Error:
        return False
