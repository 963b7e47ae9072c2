"""Shared fixtures: one course cluster for the whole session, and a check that no process outlives it."""

from __future__ import annotations

import time

import psutil
import pytest

import dml_lesson as dml


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
