"""Real faults: a worker process killed mid-training; the run finishes with the same weights, bit for bit.

Stragglers are held workers (``faults.hold_worker``): their nodes cannot answer until released, however busy the
machine, so the tests know which nodes answer each step. How much a slowed worker costs in time, and what backup
workers win back, is measured by ``benchmarks/stragglers.py``.
"""

import time

import numpy as np
import pytest

import dml_lesson as dml
from dml_lesson.cluster import faults
from dml_lesson.cluster.client import restore_workers
from dml_lesson.cluster.faults import (
    hold_worker,
    kill_at,
    kill_worker,
    release_workers,
    reset_slowdowns,
    slow_worker,
    wait_until_replaced,
)

# Every test here but test_straggle_requests_exactly_factor_minus_one_times_the_elapsed_time (a unit test of
# faults.straggle) uses the ``client`` fixture, which marks it ``cluster`` (tests/conftest.py).


def settle(killed: str, client) -> None:
    """Wait for the nanny's replacement (and a moment more, see ``wait_until_replaced``)."""
    wait_until_replaced(killed, 2, client, timeout=60)


@pytest.fixture(scope="module")
def data():
    return dml.make_regression(4000, 3, noise=0.1, seed=5, block_size=250)[:2]


@pytest.mark.parametrize("transport", ["actors", "tasks"])
@pytest.mark.parametrize("step", [0, 4, 11])
def test_killing_a_worker_mid_run_changes_nothing(client, data, transport, step):
    X, y = data
    kw = dict(n_nodes=4, lr=0.1, n_steps=12, client=client, transport=transport)
    restore_workers(client)
    reference = dml.distributed_gd(X, y, **kw)
    fault = kill_at(step, worker=1, client=client)
    res = dml.distributed_gd(X, y, on_step=fault, **kw)
    assert len(fault.killed) == 1
    assert np.array_equal(res.weights, reference.weights) and np.array_equal(res.losses, reference.losses)
    if transport == "actors":
        assert res.params["recoveries"] == [step]
    settle(fault.killed[0], client)


def test_sgd_survives_a_kill_too(client, data):
    X, y = data
    kw = dict(n_nodes=3, lr=0.05, batch_size=16, n_steps=15, seed=3, client=client)
    restore_workers(client)
    reference = dml.distributed_sgd(X, y, **kw)
    fault = kill_at(6, worker=0, client=client)
    res = dml.distributed_sgd(X, y, on_step=fault, **kw)
    assert np.array_equal(res.weights, reference.weights)
    settle(fault.killed[0], client)


def test_a_nanny_that_gave_up_is_replaced(client, data):
    """A nanny closed for good (as when its restart fails) leaves one worker; restore_workers starts another."""
    from dml_lesson.cluster.client import _state

    X, y = data
    restore_workers(client)
    reference = dml.distributed_gd(X, y, n_nodes=2, n_steps=3, client=client)
    cluster = _state["cluster"]
    nanny = cluster.workers[max(cluster.workers)]
    cluster.sync(nanny.close, timeout=5, reason="test: the nanny gives up")
    deadline = time.monotonic() + 30  # the scheduler may hear of the killed worker a moment later
    while len(dml.worker_addresses(client)) != 1 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(dml.worker_addresses(client)) == 1
    assert restore_workers(client, timeout=60) == 2
    assert nanny not in cluster.workers.values()
    res = dml.distributed_gd(X, y, n_nodes=2, n_steps=3, client=client)
    assert np.array_equal(res.weights, reference.weights)


def test_kill_worker_checks_its_argument(client):
    with pytest.raises(ValueError, match="worker must be between 0 and 1"):
        kill_worker(5, client)
    with pytest.raises(ValueError, match="is not in the cluster"):
        kill_worker("tcp://127.0.0.1:1", client)


def _timed_straggle() -> tuple[float, float]:
    """On a worker: some compute, then :func:`faults.straggle`; the compute's seconds and the whole's."""
    started = time.perf_counter()
    np.linalg.svd(np.ones((200, 200)))
    compute = time.perf_counter() - started
    faults.straggle(started)
    return compute, time.perf_counter() - started


def test_a_slowed_worker_sleeps_factor_minus_one_times_its_compute(client):
    restore_workers(client)
    addresses = dml.worker_addresses(client)
    try:
        slow_worker(1, 6.0, client)
        assert client.run(faults.slowdown) == {addresses[0]: 1.0, addresses[1]: 6.0}  # only the target worker
        assert client.run(faults.slowed_down) == {addresses[0]: False, addresses[1]: True}
        compute, total = client.submit(_timed_straggle, workers=[addresses[1]], pure=False).result(timeout=60)
    finally:
        reset_slowdowns(client)
    assert client.run(faults.slowdown) == {a: 1.0 for a in addresses}
    # straggle sleeps 5 times the time since the step started, which is at least the compute: sleep never
    # returns early, so the whole took at least 6 times the compute, however busy the machine
    assert total >= 6.0 * compute


def test_straggle_requests_exactly_factor_minus_one_times_the_elapsed_time(monkeypatch):
    import types

    slept: list[float] = []
    clock = types.SimpleNamespace(perf_counter=lambda: 10.25, sleep=slept.append, monotonic=lambda: 0.0)
    monkeypatch.setattr(faults, "time", clock)
    monkeypatch.setitem(faults._SLOWDOWN, "factor", 6.0)
    faults.straggle(10.0)
    assert slept == [5 * 0.25]
    monkeypatch.setitem(faults._SLOWDOWN, "factor", 1.0)  # full speed: no sleep at all
    faults.straggle(10.0)
    assert slept == [5 * 0.25]


HOLD = 0.5
"""Seconds the straggler tests hold a worker during one synchronous step."""


@pytest.mark.parametrize("transport", ["actors", "tasks"])
def test_a_straggler_sets_the_pace_of_every_synchronous_step(client, data, transport):
    """A held worker's nodes cannot answer until it is released: the step waits for them, and uses them."""
    import threading

    X, y = data
    kw = dict(n_nodes=4, lr=0.1, n_steps=4, client=client, transport=transport)
    restore_workers(client)
    reference = dml.distributed_gd(X, y, **kw)
    slow = reference.params["workers"][1]
    timers: list[threading.Timer] = []

    def hold_during_step_2(step: int) -> None:
        if step == 2:
            hold_worker(slow, client)  # done on the worker before step 2's messages leave
            timers.append(threading.Timer(HOLD, release_workers, args=(client,)))
            timers[0].start()

    try:
        res = dml.distributed_gd(X, y, on_step=hold_during_step_2, **kw)
    finally:
        for timer in timers:
            timer.join()
        reset_slowdowns(client)
    assert len(timers) == 1 and res.params["workers"] == reference.params["workers"]
    assert res.step_times[2] >= HOLD  # the barrier waited for the held nodes, and used their gradients:
    assert np.array_equal(res.weights, reference.weights) and np.array_equal(res.losses, reference.losses)


def test_backup_workers_leave_the_straggler_out(client, data):
    """With 2 backups of 4 nodes and the worker of nodes 1 and 3 held for the whole run, every step uses nodes
    0 and 2 only (the first two to answer: the only two that can): gradient descent on their rows."""
    from dml_lesson.cluster.shards import place_shards
    from dml_lesson.core.models import LINEAR

    X, y = data
    Xn, yn = dml.to_numpy(X, y)
    n_steps = 6
    restore_workers(client)
    p = place_shards(client, X, y, 4)
    slow = p.workers[1]
    fast = [n for n in range(4) if p.workers[n] != slow]
    assert fast == [0, 2]

    def release_for_the_last_loss(step: int) -> None:  # the last loss waits for every node: let them finish
        if step == n_steps:
            release_workers(client)

    hold_worker(slow, client)
    try:
        res = dml.distributed_gd(X, y, n_nodes=4, lr=0.1, n_steps=n_steps, backups=2, client=client,
                                 on_step=release_for_the_last_loss)
    finally:
        reset_slowdowns(client)
    assert res.params["workers"] == p.workers and res.params["backups"] == 2 and not res.diverged
    rows = np.concatenate([p.rows[n] for n in fast])
    ref = dml.gradient_descent(Xn[rows], yn[rows], lr=0.1, n_steps=n_steps)
    assert np.max(np.abs(res.weights - ref.weights)) < 1e-12
    assert np.max(np.abs(res.losses[:-1] - ref.losses[:-1])) < 1e-12  # each step's loss: over nodes 0 and 2
    assert res.losses[-1] == pytest.approx(LINEAR.loss(res.w, Xn, yn), rel=1e-12)  # the last: every node
    # the held nodes were asked once (step 0) and not again while busy: w went to 4 nodes, then to 2
    assert res.bytes_sent[0] == 2 * res.bytes_sent[1] and np.all(res.bytes_sent[1:] == res.bytes_sent[1])
    assert np.all(res.bytes_received == res.bytes_received[0])  # two replies each step


def test_with_tasks_the_server_drops_the_held_worker_s_node_steps_and_the_timeline_shows_it(client, data):
    """Notebook 07's crosses: with r = 2 backup nodes, ``transport="tasks"`` and the worker of nodes 1 and 3 held,
    every step but the last loss records tasks of nodes 0 and 2 only (the held worker's tasks are released: the
    queued one never runs, the running one ends unrecorded); the last loss waits for all four."""
    from dml_lesson.cluster.timeline import Timeline

    X, y = data
    n_steps = 3
    restore_workers(client)
    reference = dml.distributed_gd(X, y, n_nodes=4, n_steps=1, client=client)
    slow = reference.params["workers"][1]

    def release_for_the_last_loss(step: int) -> None:
        if step == n_steps:
            release_workers(client)

    hold_worker(slow, client)
    try:
        with Timeline(client) as tl:
            res = dml.distributed_gd(X, y, n_nodes=4, lr=0.1, n_steps=n_steps, backups=2, transport="tasks",
                                     client=client, on_step=release_for_the_last_loss)
    finally:
        reset_slowdowns(client)
    assert res.params["workers"][1] == res.params["workers"][3] == slow
    assert tl.nodes_per_step() == {**{s: [0, 2] for s in range(n_steps)}, n_steps: [0, 1, 2, 3]}
    assert tl.missing(4) == [(s, n) for s in range(n_steps) for n in (1, 3)]


def test_backups_must_leave_one_node(client, data):
    X, y = data
    with pytest.raises(ValueError, match="backups must be between 0 and 3"):
        dml.distributed_gd(X, y, n_nodes=4, backups=4, client=client)


@pytest.mark.slow
def test_twenty_seeded_random_kills_all_finish_with_the_same_weights(client, data):
    X, y = data
    kw = dict(n_nodes=4, lr=0.1, n_steps=10, client=client)
    restore_workers(client)
    reference = dml.distributed_gd(X, y, **kw)
    rng = np.random.default_rng(2026)
    same = 0
    for _ in range(20):
        step, worker = int(rng.integers(0, 10)), int(rng.integers(0, 2))
        fault = kill_at(step, worker=worker, client=client)
        res = dml.distributed_gd(X, y, on_step=fault, **kw)
        same += np.array_equal(res.weights, reference.weights) and res.params["recoveries"] == [step]
        settle(fault.killed[0], client)
    assert same == 20


def test_a_task_whose_workers_keep_dying_gives_a_clear_error(client, data):
    """Past Dask's allowed failures, the tasks transport stops with an explanation, not a bare KilledWorker.

    The kill lands while node 1's task of step 2 runs, every time: that task waits on its worker's hold, and
    the worker is killed only once the worker reports it waiting."""
    import threading

    X, y = data
    kw = dict(n_nodes=2, lr=0.1, n_steps=4, client=client, transport="tasks")
    restore_workers(client)
    target = dml.distributed_gd(X, y, **kw).params["workers"][1]  # places the shards
    allowed = client.run_on_scheduler(_set_allowed_failures, 0)
    killed: list[str] = []

    def kill_when_waiting() -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if client.run(faults.held_steps, workers=[target]).get(target, 0) >= 1:
                killed.append(kill_worker(target, client))
                return
            time.sleep(0.02)

    watchers: list[threading.Thread] = []

    def kill_during_step_2(step: int) -> None:
        if step == 2 and not watchers:
            hold_worker(target, client, seconds=60)
            watchers.append(threading.Thread(target=kill_when_waiting, daemon=True))
            watchers[0].start()

    try:
        with pytest.raises(RuntimeError, match="allowed-failures") as info:
            dml.distributed_gd(X, y, on_step=kill_during_step_2, **kw)
        assert "step 2 failed" in str(info.value) and "died 1 time " in str(info.value)
        assert "dml.close_client()" in str(info.value)
    finally:
        for watcher in watchers:
            watcher.join(timeout=70)
        client.run_on_scheduler(_set_allowed_failures, allowed)
        reset_slowdowns(client)
    assert killed == [target]
    settle(killed[0], client)


def _set_allowed_failures(value: int, dask_scheduler=None) -> int:
    old, dask_scheduler.allowed_failures = dask_scheduler.allowed_failures, value
    return old
