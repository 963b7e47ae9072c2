"""The course cluster: one shared client, 127.0.0.1 only, BLAS capped, and nothing left behind."""

import psutil
import pytest

import dml_lesson as dml

pytestmark = pytest.mark.cluster


def test_get_client_is_idempotent(client):
    assert dml.get_client() is client
    assert client.status == "running"


def test_everything_listens_on_localhost_only(client):
    pids = set(client.run(lambda: __import__("os").getpid()).values())
    pids |= {psutil.Process().pid}
    listening = [
        c.laddr for pid in pids for c in psutil.Process(pid).net_connections(kind="inet")
        if c.status == psutil.CONN_LISTEN
    ]
    assert listening, "the cluster should listen somewhere"
    assert all(addr.ip == "127.0.0.1" for addr in listening), listening
    assert client.scheduler.address.startswith("tcp://127.0.0.1:")
    assert dml.dashboard_link(client).startswith("http://127.0.0.1:")


def test_workers_have_one_thread_a_memory_limit_and_capped_blas(client):
    table = dml.worker_table(client)
    assert len(table) == 2
    assert all(row["nthreads"] == 1 and 0 < row["memory_limit"] <= 2 * 2**30 for row in table)
    env = client.run(lambda: __import__("os").environ.get("OPENBLAS_NUM_THREADS"))
    assert set(env.values()) == {"1"}


def test_dashboard_port_falls_back_when_8787_is_taken(monkeypatch):
    import socket

    from dml_lesson import cluster

    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", cluster.DASHBOARD_PORT))
        except OSError:
            pass  # already taken by someone else: the fallback applies all the same
        assert cluster._free_dashboard_port() == 0


def test_connects_to_the_scheduler_named_in_dask_config():
    """With DASK_SCHEDULER_ADDRESS set, get_client() joins that cluster instead of starting one."""
    import os
    import subprocess
    import sys

    from distributed import LocalCluster

    with LocalCluster(n_workers=1, threads_per_worker=1, processes=False, host="127.0.0.1", protocol="tcp",
                      dashboard_address="127.0.0.1:0") as external:
        env = {**os.environ, "DASK_SCHEDULER_ADDRESS": external.scheduler_address}
        code = ("import dml_lesson as dml; c = dml.get_client(); "
                "print(c.scheduler.address, len(dml.worker_addresses(c))); "
                "X, y, _ = dml.make_regression(200, 2, seed=0); "
                "print(dml.distributed_gd(X, y, n_nodes=2, n_steps=3).n_steps)")
        out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == [external.scheduler_address, "1", "3"]


def test_a_wait_that_never_ends_becomes_a_clear_timeout_error():
    import threading

    from dml_lesson.cluster import bounded

    release = threading.Event()
    with pytest.raises(TimeoutError, match=r"gathering the shards did not finish within 1 s.*dml.close_client"):
        bounded("gathering the shards", release.wait, 30, timeout=1.0)
    release.set()
    assert bounded("a quick call", sum, [1, 2, 3]) == 6


def test_a_scheduler_without_workers_gives_a_clear_error():
    import os
    import subprocess
    import sys

    from distributed import LocalCluster

    with LocalCluster(n_workers=0, processes=False, host="127.0.0.1", protocol="tcp",
                      dashboard_address="127.0.0.1:0") as empty:
        env = {**os.environ, "DASK_SCHEDULER_ADDRESS": empty.scheduler_address}
        code = "import dml_lesson as dml; dml.get_client()"
        out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode != 0
    assert "ConnectionError" in out.stderr and "has no workers" in out.stderr and "dask worker" in out.stderr
