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
