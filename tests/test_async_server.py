"""The asynchronous parameter server: it converges, records the staleness of every gradient, keeps a staleness
bound, equals the synchronous server with bound 0, and leaves no loop, thread or actor behind.

Asynchronous runs depend on timing: apart from bound 0 these tests check properties, not numbers.
"""

import time

import numpy as np
import pytest

import dml_lesson as dml
from dml_lesson import faults
from dml_lesson.async_server import AsyncResult, async_sgd

pytestmark = pytest.mark.cluster


@pytest.fixture(scope="module")
def data():
    return dml.make_regression(2000, 3, noise=0.1, seed=3, block_size=125)[:2]


def test_async_converges_and_records_every_gradient(client, data):
    X, y = data
    res = async_sgd(X, y, n_nodes=4, lr=0.05, batch_size=16, n_updates=300, seed=1, client=client)
    assert isinstance(res, AsyncResult) and not res.diverged
    assert res.n_steps == 300 and len(res.losses) == 301 and res.weights.shape == (301, 4)
    assert res.losses[-1] < 0.02 < res.losses[0]  # noise floor 0.01; starts near the variance of y
    # one record per update, each from a known node, clocks counting up per node
    assert len(res.staleness) == len(res.nodes) == 300 == res.params["gradients"]
    assert set(res.nodes) <= {0, 1, 2, 3} and len(set(res.nodes)) >= 2
    for node in set(res.nodes):
        assert np.array_equal(res.clocks[res.nodes == node], np.arange(np.sum(res.nodes == node)))
    # staleness = updates applied between the read and the arrival: in [0, updates so far)
    assert np.all(res.staleness >= 0) and np.all(res.staleness <= np.arange(300))
    assert np.all(res.versions_read + res.staleness == np.arange(300))
    assert np.all(np.diff(res.arrival_times) >= 0) and np.all(res.step_times >= 0)
    assert res.updates_per_second > 0 and np.array_equal(res.messages, 2 * np.arange(301))


@pytest.mark.parametrize("bound", [1, 3])
def test_staleness_bound_holds(client, data, bound):
    X, y = data
    res = async_sgd(X, y, n_nodes=4, lr=0.05, batch_size=16, n_updates=80, staleness_bound=bound, client=client)
    assert res.n_steps == 80 and len(res.staleness) == 4 * 80  # every node's gradient in every update
    assert res.staleness.max() <= bound and res.staleness.min() >= 0
    assert res.losses[-1] < res.losses[0] / 10
    # update t combines clock t of every node, each computed at a version >= t - bound
    assert np.all(res.versions_read >= res.clocks - bound)


@pytest.mark.parametrize("n_nodes", [1, 3])
def test_bound_zero_is_the_synchronous_server_bit_for_bit(client, data, n_nodes):
    X, y = data
    kw = dict(n_nodes=n_nodes, lr=0.05, batch_size=8, seed=5, client=client, layout="shuffled")
    sync = dml.distributed_sgd(X, y, n_steps=40, **kw)
    ssp = async_sgd(X, y, n_updates=40, staleness_bound=0, **kw)
    assert np.array_equal(ssp.weights, sync.weights) and np.array_equal(ssp.losses, sync.losses)
    assert np.all(ssp.staleness == 0)


def test_one_node_without_bound_is_sgd_on_its_shard(client, data):
    X, y = data
    Xn, yn = dml.to_numpy(X, y)
    res = async_sgd(X, y, n_nodes=1, lr=0.05, batch_size=16, n_updates=50, seed=4, client=client)
    ref = dml.sgd(Xn, yn, lr=0.05, batch_size=16, n_steps=50, seed=4)
    assert np.all(res.staleness == 0)  # nobody else moves w
    assert np.max(np.abs(res.weights - ref.weights)) < 1e-12


def test_divergence_stops_the_run_quietly(client, data):
    X, y = data
    res = async_sgd(X, y, n_nodes=2, lr=5.0, batch_size=16, n_updates=2000, client=client)
    assert res.diverged and res.diverged_at is not None and res.n_steps < 2000


def test_a_straggler_does_not_hold_up_the_others(client):
    X, y, _ = dml.make_regression(100_000, 3, noise=0.1, seed=2)  # big batches: computing, not messages, dominates
    # Slow down the worker that holds node 1 (after the fault tests' restarts, worker 1 in address order need not be)
    slow = dml.place_shards(client, X, y, n_nodes=2).workers[1]
    faults.slow_worker(slow, 20.0, client)
    try:
        res = async_sgd(X, y, n_nodes=2, lr=0.05, batch_size=20_000, n_updates=40, client=client)
    finally:
        faults.reset_slowdowns(client)
    assert res.params["workers"][1] == slow != res.params["workers"][0]
    counts = np.bincount(res.nodes, minlength=2)
    assert counts[0] > counts[1]  # node 1 lives on the slow worker: it pushes fewer gradients
    assert res.staleness[res.nodes == 1].mean() > res.staleness[res.nodes == 0].mean()


def _actors_and_threads(dask_worker):
    import threading

    return len(dask_worker.state.actors), threading.active_count()


def test_no_loop_thread_or_actor_left_behind(client, data):
    X, y = data
    async_sgd(X, y, n_nodes=4, lr=0.05, batch_size=16, n_updates=20, client=client)  # warm up: shards, threads
    before = client.run(_actors_and_threads)
    for bound in [None, 2, None]:
        async_sgd(X, y, n_nodes=4, lr=0.05, batch_size=16, n_updates=50, staleness_bound=bound, client=client)
    deadline = time.monotonic() + 10
    while (after := client.run(_actors_and_threads)) != before and time.monotonic() < deadline:
        time.sleep(0.1)  # releasing an actor reaches its worker a moment later
    assert {a: n for a, (n, _) in after.items()} == {a: n for a, (n, _) in before.items()}
    assert all(after[a][1] <= before[a][1] for a in before)
    assert not [k for k in client.who_has() if str(k).startswith("async-nodes-")]


@pytest.mark.parametrize(
    "kwargs, error, words",
    [
        ({"n_nodes": 0}, ValueError, "n_nodes must be between 1 and 16"),
        ({"lr": -1.0}, ValueError, "lr must be"),
        ({"n_updates": 0}, ValueError, "n_updates must be >= 1"),
        ({"n_updates": 2.5}, TypeError, "n_updates must be an integer"),
        ({"staleness_bound": -1}, ValueError, "staleness_bound must be >= 0 (or None for no bound), got -1"),
        ({"staleness_bound": "2"}, TypeError, "staleness_bound must be an integer"),
        ({"batch_size": 0}, ValueError, "batch_size must be between 1 and 500"),
        ({"seed": -3}, ValueError, "seed must be >= 0"),
    ],
)
def test_bad_input_named_errors(client, data, kwargs, error, words):
    X, y = data
    with pytest.raises(error) as info:
        async_sgd(X, y, client=client, **kwargs)
    assert words in str(info.value)


def test_staleness_explorer(client, data):
    from dml_lesson import widgets_async

    X, y = data
    initial = widgets_async.staleness_runs(X, y, 2, n_gradients=200, client=client)
    e = widgets_async.staleness_explorer(X, y, bound="2", n_gradients=200, client=client, initial=initial)
    assert e.redraws == 1 and "bound 2: staleness at most" in e.status.value
    e.controls["bound"].value = "0"
    assert e.redraws == 2 and "bound 0: staleness at most 0," in e.status.value
    e.controls["bound"].value = "none"
    assert e.redraws == 3 and "bound" not in e.status.value.split("<small>")[0].replace("no bound", "")
