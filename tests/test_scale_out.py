"""Scale-out: the same notebook runs unchanged on a cluster started from the command line, by setting one
variable (``DASK_SCHEDULER_ADDRESS``), and gives the same weights as on the course's local cluster.

The test starts a real ``dask scheduler`` and two ``dask worker`` processes on 127.0.0.1 (as an administrator
would on separate machines), runs notebook 04's code cells in a fresh interpreter against them, then the same
cells with no address (a ``LocalCluster``), and compares the weights. It stops every process it started.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import psutil
import pytest
from distributed import Client

from dml_lesson.cluster.client import WORKER_ENV

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOK = ROOT / "notebooks" / "04_distributed_gd.ipynb"

pytestmark = [pytest.mark.cluster, pytest.mark.slow]

RUNNER = """
import json, sys
import nbformat
from IPython.terminal.interactiveshell import TerminalInteractiveShell

shell = TerminalInteractiveShell.instance()
nb = nbformat.read(sys.argv[1], as_version=4)
for cell in nb.cells:
    if cell.cell_type == "code":
        result = shell.run_cell(cell.source, silent=True)
        if not result.success:
            sys.exit(f"failed in: {cell.source[:80]!r}: {result.error_in_exec!r}")
ns = shell.user_ns
import dml_lesson as dml
client = dml.get_client()
out = {
    "scheduler": client.scheduler.address,
    "workers": dml.worker_addresses(client),
    "w_next": ns["w_next"].tolist(),
    "gd": ns["gd"].weights.tolist(),
    "distributed_200_steps": dml.distributed_gd(ns["X"], ns["y"], n_nodes=8, lr=0.1, n_steps=200).weights.tolist(),
    "one_million_rows": ns["dist"].weights.tolist(),
    "skewed": dml.combine(ns["replies"]).tolist(),
}
print("RESULT " + json.dumps(out), flush=True)
"""


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DASK_")}
    env.update(WORKER_ENV, MPLBACKEND="Agg", PYTHONHASHSEED="0", PYTHONPATH=str(ROOT), **extra)
    return env


def _children(proc: subprocess.Popen) -> list[psutil.Process]:
    try:
        return psutil.Process(proc.pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []


def _stop(procs: list[subprocess.Popen]) -> None:
    """Terminate what we started (workers first), then kill what does not stop, children included."""
    for proc in reversed(procs):
        if proc.poll() is None:
            for child in _children(proc):
                child.terminate()
            proc.terminate()
    for proc in reversed(procs):
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            for child in _children(proc):
                child.kill()
            proc.kill()
            proc.wait(timeout=5)


@pytest.fixture
def cli_cluster(tmp_path):
    """A scheduler and two workers started with the ``dask`` command line, on 127.0.0.1 only."""
    dask_cli = [sys.executable, "-m", "dask"]
    scheduler_file = tmp_path / "scheduler.json"
    logs = [open(tmp_path / f"{name}.log", "w") for name in ("scheduler", "worker0", "worker1")]
    procs: list[subprocess.Popen] = []
    try:
        procs.append(subprocess.Popen(
            [*dask_cli, "scheduler", "--host", "127.0.0.1", "--port", "0", "--dashboard-address", "127.0.0.1:0",
             "--scheduler-file", str(scheduler_file)], env=_env(), cwd=tmp_path, stdout=logs[0],
            stderr=subprocess.STDOUT))
        deadline = time.monotonic() + 60
        while not scheduler_file.exists() or not scheduler_file.read_text().strip():
            assert procs[0].poll() is None, (tmp_path / "scheduler.log").read_text()
            assert time.monotonic() < deadline, "the scheduler did not write its file within 60 s"
            time.sleep(0.2)
        address = json.loads(scheduler_file.read_text())["address"]
        for i in range(2):
            procs.append(subprocess.Popen(
                [*dask_cli, "worker", address, "--nthreads", "1", "--nworkers", "1", "--host", "127.0.0.1",
                 "--memory-limit", "1.5GiB", "--dashboard-address", "127.0.0.1:0", "--name", f"cli-worker-{i}"],
                env=_env(), cwd=tmp_path, stdout=logs[i + 1], stderr=subprocess.STDOUT))
        with Client(address, timeout="30s") as probe:  # workers take seconds to join on a busy machine
            probe.wait_for_workers(2, timeout=90)
        yield address
    finally:
        _stop(procs)
        for log in logs:
            log.close()


def _start_notebook(env: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", RUNNER, str(NOTEBOOK)], cwd=ROOT / "notebooks", env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _result(proc: subprocess.Popen) -> dict:
    try:
        stdout, stderr = proc.communicate(timeout=240)
    except subprocess.TimeoutExpired:
        _stop([proc])
        raise
    assert proc.returncode == 0, stderr[-3000:] + stdout[-2000:]
    lines = [line for line in stdout.splitlines() if line.startswith("RESULT ")]
    assert lines, stdout[-2000:]
    return json.loads(lines[-1][len("RESULT "):])


def test_notebook_04_on_a_command_line_cluster_gives_the_local_weights(cli_cluster):
    # Both runs at once, to stay within the time budget; only their weights are compared, never their timings.
    runs = [_start_notebook(_env(DASK_SCHEDULER_ADDRESS=cli_cluster)), _start_notebook(_env())]
    try:
        remote, local = _result(runs[0]), _result(runs[1])
    finally:
        _stop(runs)
    assert remote["scheduler"] == cli_cluster  # it really ran on the external cluster...
    assert len(remote["workers"]) == 2 and all(w.startswith("tcp://127.0.0.1:") for w in remote["workers"])
    assert local["scheduler"] != cli_cluster  # ...and this run on a LocalCluster of its own
    for key in ["w_next", "gd", "distributed_200_steps", "one_million_rows", "skewed"]:
        assert np.array_equal(np.array(remote[key]), np.array(local[key])), key
