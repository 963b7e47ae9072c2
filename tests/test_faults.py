"""Real faults: a worker process killed mid-training; the run finishes with the same weights, bit for bit."""

import numpy as np
import pytest

import dml_lesson as dml
from dml_lesson.cluster import restore_workers
from dml_lesson.faults import kill_at, kill_worker, reset_slowdowns, slow_worker, wait_until_replaced

pytestmark = pytest.mark.cluster


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
    from dml_lesson.cluster import _state

    X, y = data
    restore_workers(client)
    reference = dml.distributed_gd(X, y, n_nodes=2, n_steps=3, client=client)
    cluster = _state["cluster"]
    nanny = cluster.workers[max(cluster.workers)]
    cluster.sync(nanny.close, timeout=5, reason="test: the nanny gives up")
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


def test_a_slowed_worker_makes_its_steps_slower(client):
    X, y, _ = dml.make_regression(200_000, 10, seed=1)
    kw = dict(n_nodes=2, lr=0.1, n_steps=6, client=client)
    fast = np.median(dml.distributed_gd(X, y, **kw).step_times)
    try:
        slow_worker(1, 6.0, client)
        slow = np.median(dml.distributed_gd(X, y, **kw).step_times)
    finally:
        reset_slowdowns(client)
    assert slow > 2 * fast


def test_a_straggler_sets_the_pace_and_backup_workers_remove_it(client):
    from dml_lesson.timeline import Timeline

    X, y, _ = dml.make_regression(400_000, 10, seed=2)
    kw = dict(n_nodes=4, n_steps=6, transport="tasks", client=client)
    dml.distributed_gd(X, y, **kw)  # place the shards, warm up
    fast = np.median(dml.distributed_gd(X, y, **kw).step_times)
    try:
        slow_worker(1, 20.0, client)  # the slowdown must dominate the ~30 ms of task overhead per step
        with Timeline(client) as timeline:
            slow = np.median(dml.distributed_gd(X, y, **kw).step_times)
        res = dml.distributed_gd(X, y, backups=2, **kw)
    finally:
        reset_slowdowns(client)
    compute = timeline.per_node("compute")
    assert slow >= max(compute.values())  # a synchronous step lasts at least the slowest node's work
    assert max(compute.values()) > 2.5 * min(compute.values())
    assert all(r.waiting >= 0 for r in timeline.rows) and slow > 1.5 * fast
    backed = np.median(res.step_times)  # backup workers: back near the fast nodes' pace
    assert backed < 0.75 * slow and backed < 1.5 * fast
    assert res.params["backups"] == 2 and not res.diverged


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


def test_a_task_whose_workers_keep_dying_gives_a_clear_error(client):
    """Past Dask's allowed failures, the tasks transport stops with an explanation, not a bare KilledWorker."""
    import threading

    X, y, _ = dml.make_regression(200_000, 10, seed=1)
    kw = dict(n_nodes=2, lr=0.1, n_steps=4, client=client, transport="tasks")
    restore_workers(client)
    dml.distributed_gd(X, y, **kw)  # place the shards
    allowed = client.run_on_scheduler(_set_allowed_failures, 0)
    killed: list[str] = []

    def kill_during_step(step: int) -> None:  # the slowed worker's step takes seconds: kill it midway
        if step == 2 and not killed:
            timer = threading.Timer(0.3, lambda: killed.append(kill_worker(1, client)))
            timer.start()

    try:
        slow_worker(1, 500.0, client)
        with pytest.raises(RuntimeError, match="allowed-failures") as info:
            dml.distributed_gd(X, y, on_step=kill_during_step, **kw)
        assert "died 1 time(s) in a row" in str(info.value) and "dml.close_client()" in str(info.value)
    finally:
        client.run_on_scheduler(_set_allowed_failures, allowed)
        reset_slowdowns(client)
    settle(killed[0], client)


def _set_allowed_failures(value: int, dask_scheduler=None) -> int:
    old, dask_scheduler.allowed_failures = dask_scheduler.allowed_failures, value
    return old
