"""The course cluster: one shared client, 127.0.0.1 only, BLAS capped, and nothing left behind.

The tests that start a cluster (the session's, one of their own, or external scheduler processes) are marked
``cluster``; the others check helpers (the dashboard port, bounded waits, log filters) without one.
"""

import psutil
import pytest

import dml_lesson as dml


@pytest.mark.cluster
def test_get_client_is_idempotent(client):
    assert dml.get_client() is client
    assert client.status == "running"


@pytest.mark.cluster
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


@pytest.mark.cluster
def test_workers_have_one_thread_a_memory_limit_and_capped_blas(client):
    table = dml.worker_table(client)
    assert len(table) == 2
    assert all(row["nthreads"] == 1 and 0 < row["memory_limit"] <= 2 * 2**30 for row in table)
    env = client.run(lambda: __import__("os").environ.get("OPENBLAS_NUM_THREADS"))
    assert set(env.values()) == {"1"}


def test_dashboard_port_falls_back_when_8787_is_taken(monkeypatch):
    import socket

    from dml_lesson.cluster import startstop

    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", startstop.DASHBOARD_PORT))
        except OSError:
            pass  # already taken by someone else: the fallback applies all the same
        assert startstop.free_dashboard_port() == 0


@pytest.mark.cluster
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

    from dml_lesson.cluster.client import bounded

    release = threading.Event()
    advice = r"dml.close_client\(\), then client = dml.get_"
    with pytest.raises(TimeoutError, match=r"the shards did not finish within 1 s.*" + advice):
        bounded("gathering the shards", release.wait, 30, timeout=1.0)
    release.set()
    assert bounded("a quick call", sum, [1, 2, 3]) == 6


@pytest.mark.cluster
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


@pytest.fixture
def external(monkeypatch, tmp_path):
    """A scheduler and one worker in processes of their own on 127.0.0.1, killed at teardown; the course's state
    swapped for a fresh one meanwhile (as in a new kernel: the session's cluster is left alone)."""
    import json
    import os
    import signal
    import subprocess
    import sys
    import time

    from dml_lesson.cluster import client as cluster

    monkeypatch.setattr(cluster, "_state", dict(cluster._EMPTY))
    procs, file = [], tmp_path / "scheduler.json"

    def start(*args):
        with open(tmp_path / f"{len(procs)}.log", "w") as log:
            procs.append(subprocess.Popen([sys.executable, "-m", *args], stdout=log, stderr=log,
                                          start_new_session=True))
        return procs[-1]

    try:
        local = ("--host", "127.0.0.1", "--no-dashboard", "--dashboard-address", "127.0.0.1:0")  # else 0.0.0.0
        scheduler = start("distributed.cli.dask_scheduler", *local, "--port", "0", "--scheduler-file", str(file))
        deadline = time.monotonic() + 60
        while not file.exists() and time.monotonic() < deadline and scheduler.poll() is None:
            time.sleep(0.1)
        address = json.loads(file.read_text())["address"]
        start("distributed.cli.dask_worker", address, *local, "--nthreads", "1", "--no-nanny")
        yield address, procs
    finally:
        cluster.close_client()
        for proc in procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)


@pytest.mark.cluster
@pytest.mark.slow
@pytest.mark.parametrize("named_by", ["address", "DASK_SCHEDULER_ADDRESS"])
def test_a_dead_external_scheduler_is_named_within_seconds(external, named_by):
    """Its scheduler killed, the next course calls say that the scheduler at ADDRESS is gone and how to restart
    an external cluster, each within seconds (not a KeyError 23 s later); close_client() does not hang."""
    import re
    import time

    import dask

    from dml_lesson.cluster.client import restart_advice

    address, (scheduler, worker) = external
    hint = ("unset DASK_SCHEDULER_ADDRESS and start it again" if named_by == "DASK_SCHEDULER_ADDRESS"
            else "without address=")
    with dask.config.set({"scheduler-address": address if named_by != "address" else None}):
        client = dml.get_client(address=address if named_by == "address" else None)
        assert len(dml.worker_addresses(client)) == 1
        listening = [c.laddr for p in (scheduler, worker) for c in psutil.Process(p.pid).net_connections("inet")
                     if c.status == psutil.CONN_LISTEN]
        assert listening and all(addr.ip == "127.0.0.1" for addr in listening), listening
        advice = restart_advice(client)
        assert f"restart its scheduler at {address}" in advice and hint in advice
        assert "dml.close_client() cannot restart it" in advice
        scheduler.kill()
        scheduler.wait(10)
        calls = {"worker_addresses(client)": lambda: dml.worker_addresses(client), "worker_table()": dml.worker_table,
                 "get_client()": dml.get_client, "worker_table(client)": lambda: dml.worker_table(client)}
        for name, call in calls.items():
            start = time.monotonic()
            with pytest.raises(ConnectionError, match=f"Dask scheduler at {re.escape(address)}") as info:
                call()
            assert time.monotonic() - start < 8, name
            assert "restart its scheduler" in str(info.value) and hint in str(info.value), (name, info.value)
        assert "is gone" in str(info.value) or "lost the Dask scheduler" in str(info.value)
        start = time.monotonic()
        dml.close_client()
        assert time.monotonic() - start < 5


@pytest.mark.cluster
def test_restart_advice_fits_where_the_cluster_comes_from(client, monkeypatch):
    import dask

    from dml_lesson.cluster import client as cluster

    local = cluster.restart_advice(client)
    assert "dml.close_client(), then client = dml.get_client()" in local and cluster.restart_advice() == local
    monkeypatch.setattr(cluster, "_state", dict(cluster._EMPTY))  # a new kernel, nothing started yet
    assert cluster.restart_advice() == local
    with dask.config.set({"scheduler-address": "tcp://127.0.0.1:8786"}):
        advice = cluster.restart_advice()
    assert "scheduler at tcp://127.0.0.1:8786" in advice and "unset DASK_SCHEDULER_ADDRESS" in advice


def test_only_the_handled_dask_errors_are_muted():
    """A worker's "failed during get data" on a closed connection (a Stop mid-gather, a killed peer) and the
    nanny's failed restart are dropped; the same messages for other errors, and other messages, still show."""
    import logging

    from distributed.comm.core import CommClosedError

    from dml_lesson.cluster.startstop import ClosedTransfer, HandledRestartFailure

    def record(msg, error=None):
        exc_info = (type(error), error, None) if error else None
        return logging.LogRecord("distributed.worker", logging.ERROR, __file__, 1, msg, ("a", "b"), exc_info)

    closed = ClosedTransfer()
    assert not closed.filter(record("failed during get data with %s -> %s", CommClosedError("Stream is closed")))
    assert closed.filter(record("failed during get data with %s -> %s", ValueError("a real bug")))
    assert closed.filter(record("Compute Failed", OSError("disk")))
    restart = HandledRestartFailure()
    assert not restart.filter(record("Failed to restart worker after its process exited"))
    assert restart.filter(record("Failed to start process"))


def _closed_transfer_filters() -> list[str]:
    import logging

    return [type(f).__name__ for f in logging.getLogger("distributed.worker").filters]


_closed_transfer_filters.__module__ = "__main__"  # pickled by value: the check itself imports nothing of the course


@pytest.mark.cluster
def test_every_worker_that_ran_a_step_mutes_closed_transfers_the_replacements_too(client):
    from dml_lesson.cluster.faults import kill_worker, wait_until_replaced

    X, y = dml.make_regression(400, 3, seed=3)[:2]
    dml.distributed_gd(X, y, n_nodes=2, n_steps=2, client=client)
    assert all("ClosedTransfer" in names for names in client.run(_closed_transfer_filters).values())
    killed = kill_worker(1, client)
    wait_until_replaced(killed, 2, client, timeout=60)
    dml.distributed_gd(X, y, n_nodes=2, n_steps=2, client=client)  # the replacement runs a node step
    answers = client.run(_closed_transfer_filters)
    assert killed not in answers and len(answers) == 2
    assert all("ClosedTransfer" in names for names in answers.values())


def _stream(*tasks):
    """Task-stream records of node steps: (node, step, worker, start, stop) in seconds."""
    return [{"key": f"node_step-{n}-{s}-run", "worker": w, "startstops": [{"action": "compute", "start": a, "stop": b}]}
            for n, s, w, a, b in tasks]


def test_the_timeline_splits_waiting_into_later_start_and_longer_compute():
    """Node 0 computes 1 s from 0; node 1 starts 2 s later and computes 3 s: node 0 waits 4 s, 2 of them because
    node 1 started later, 2 because it computed longer."""
    from dml_lesson.cluster.timeline import Timeline, node_steps

    tl = Timeline.__new__(Timeline)
    tl.rows = node_steps(_stream((0, 0, "a", 10.0, 11.0), (1, 0, "b", 12.0, 15.0)))
    assert [r.waiting for r in tl.rows] == [4.0, 0.0]
    assert tl.waiting_parts() == {"later start": 2.0, "longer compute": 2.0}
    assert tl.stagger().tolist() == [2.0]


def test_the_timeline_takes_off_the_clock_offset_dask_added_per_worker(client):
    """Worker b's times were moved 0.08 s late: with that offset taken off, its task starts with worker a's."""
    from dml_lesson.cluster.timeline import clock_offsets, node_steps

    rows = node_steps(_stream((0, 0, "a", 1.0, 2.0), (1, 0, "b", 1.08, 1.58)), {"b": 0.08})
    assert [(r.node, r.start, r.stop) for r in rows] == [(0, 0.0, 1.0), (1, pytest.approx(0.0), pytest.approx(0.5))]
    offsets = clock_offsets(client)  # workers on this machine: one offset per worker, milliseconds at most
    assert set(offsets) == set(dml.worker_addresses(client))
    assert all(abs(d) < 1.0 for d in offsets.values())


def test_the_pace_of_a_step_counts_a_worker_s_tasks_in_a_row_and_the_gap():
    """Worker a runs nodes 0 and 2 one after the other (2 s + 1 s), starting 0.5 s after worker b's node 1 (2.5 s)
    and, in step 1, waiting another 0.5 s between them: the busiest worker's compute is 3 s, longer than the largest
    task (2.5 s), and each step lasts that plus its idle time (3.5 s, then 4 s); the gap is 3.5 s."""
    from dml_lesson.cluster.timeline import Timeline, node_steps

    tl = Timeline.__new__(Timeline)
    tl.rows = node_steps(_stream((0, 0, "a", 0.5, 2.5), (2, 0, "a", 2.5, 3.5), (1, 0, "b", 0.0, 2.5),
                                 (0, 1, "a", 7.5, 9.5), (2, 1, "a", 10.0, 11.0), (1, 1, "b", 7.0, 9.5)))
    pace = tl.pace()
    assert pace == {"step": 3.75, "largest task": 2.5, "busiest worker": 3.0, "busiest idle": 0.75, "gap": 3.5}


def test_the_timeline_names_the_node_steps_with_no_recorded_task():
    from dml_lesson.cluster.timeline import Timeline, node_steps

    tl = Timeline.__new__(Timeline)
    tl.rows = node_steps(_stream((0, 0, "a", 0.0, 1.0), (2, 0, "a", 1.0, 2.0), (0, 1, "a", 3.0, 4.0),
                                 (1, 1, "b", 3.0, 5.0), (2, 1, "a", 4.0, 5.0), (3, 1, "b", 5.0, 6.0)))
    assert tl.nodes_per_step() == {0: [0, 2], 1: [0, 1, 2, 3]}
    assert tl.missing(4) == [(0, 1), (0, 3)]
    with pytest.raises(ValueError, match="n_nodes"):
        tl.missing(0)


def _rows_in(shard):
    return len(shard[1])


def _busy_rows(shard):
    import time

    time.sleep(0.05)
    return len(shard[1])


def test_unpinned_tasks_run_where_their_shard_is_and_wait_there_when_it_is_busy(client):
    """Notebook 03: a task on a shard held by one worker, submitted without ``workers=``, runs on that worker; eight
    such tasks at once (more than twice the threads) all queue there while the other worker idles: their inputs
    come from 8 shard tasks, too many for a root-ish group, and this cluster runs without work stealing. Eight
    tasks without input are root-ish: they go to whichever worker has a free thread, so both workers run some."""
    import time
    from collections import Counter

    from distributed import get_task_stream

    X, y = dml.make_regression(800, 3, seed=11, block_size=100)[:2]
    p = dml.place_shards(client, X, y, n_nodes=8, layout="shuffled")
    held = client.who_has(p.futures)
    assert all(len(held[f.key]) == 1 for f in p.futures)
    with get_task_stream(client) as stream:
        tasks = [client.submit(_rows_in, f, pure=False) for f in p.futures]
        assert client.gather(tasks) == p.sizes
    ran = {t["key"]: t["worker"] for t in stream.data}
    assert [ran[t.key] for t in tasks] == [held[f.key][0] for f in p.futures]
    with get_task_stream(client) as stream:
        client.gather(client.map(_busy_rows, [p.futures[0]] * 8, pure=False))
    assert Counter(t["worker"] for t in stream.data) == {held[p.futures[0].key][0]: 8}
    with get_task_stream(client) as stream:
        client.gather(client.map(time.sleep, [0.05] * 8, pure=False))
    assert {t["worker"] for t in stream.data} == set(dml.worker_addresses(client))
