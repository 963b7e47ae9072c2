"""The asynchronous parameter server: it converges, records the staleness of every gradient, keeps a staleness
bound, equals the synchronous server with bound 0, and leaves no loop, thread or actor behind.

Asynchronous runs depend on timing: these tests check what holds for any timing (every update replayed exactly
from its records; a held straggler's run is SGD on the other node's shard; bound 0 is the synchronous server;
staleness is counted in gradients in both modes). How fast, how stale and how close to the noise floor a run gets
on this machine is ``benchmarks/stragglers.py``'s.
"""

import time

import numpy as np
import pytest

import dml_lesson as dml
from dml_lesson.cluster import faults
from dml_lesson.teaching import experiments
from dml_lesson.variants.async_server import async_sgd

pytestmark = pytest.mark.cluster


@pytest.fixture(scope="module")
def data():
    return dml.make_regression(2000, 3, noise=0.1, seed=3, block_size=125)[:2]


def replay(client, X, y, res, lr, batch_size, seed):
    """Check every update against the records, exactly: update ``k`` applies the gradients recorded for it
    (node, clock), each computed at the version of ``w`` recorded as read; returns the shards' rows."""
    from dml_lesson.core.models import LINEAR

    Xn, yn = dml.to_numpy(X, y)
    rows = dml.place_shards(client, X, y, n_nodes=res.params["n_nodes"]).rows  # the run's placement (cached)
    per_update = 1 if res.params["staleness_bound"] is None else res.params["n_nodes"]
    assert len(res.nodes) == per_update * res.n_steps
    for k in range(res.n_steps):
        grad_sum, count = 0.0, 0
        for i in range(k * per_update, (k + 1) * per_update):
            node, clock, read = res.nodes[i], res.clocks[i], res.versions_read[i]
            Xs, ys = Xn[rows[node]], yn[rows[node]]
            idx = dml.minibatch_indices(len(ys), batch_size, seed, node, clock)
            grad_sum, count = grad_sum + LINEAR.sums(res.weights[read], Xs[idx], ys[idx])[1], count + len(ys[idx])
        assert np.max(np.abs(res.weights[k + 1] - (res.weights[k] - lr * grad_sum / count))) < 1e-12, k
    return rows


def gradients_missed(res):
    """tau derived from the records alone: the gradients applied after the version each gradient read and before
    the update that applied it. Gradient ``i`` goes in with update ``u[i]`` (its arrival index without a bound, its
    clock with one); ``before[v]`` counts the gradients of the updates before version ``v``."""
    u = np.arange(len(res.nodes)) if res.params["staleness_bound"] is None else res.clocks
    before = np.concatenate([[0], np.cumsum(np.bincount(u, minlength=res.n_steps))])
    return before[u] - before[res.versions_read]


@pytest.mark.parametrize("bound", [None, 0, 2])
def test_staleness_is_counted_in_gradients_in_both_modes(client, data, bound):
    """One unit on the histogram's axis. No bound: every update is one gradient, so tau is the versions between
    the read and the update (at most 3 on average with 4 nodes: each other node has one gradient in flight). Bound
    s with N = 4 nodes: an update combines one clock of 4 gradients, so tau is 4 * (clocks missed), from 0 to 4 s;
    bound 0 misses none: tau = 0 for every gradient, as on the synchronous server."""
    X, y = data
    n_updates = 200 if bound is None else 50
    res = async_sgd(X, y, n_nodes=4, lr=0.05, batch_size=16, n_updates=n_updates, staleness_bound=bound,
                    client=client)
    assert len(res.staleness) == 200
    assert np.array_equal(res.staleness, gradients_missed(res))
    if bound is None:
        assert np.array_equal(res.staleness, np.arange(200) - res.versions_read)
        # every node has at most one gradient in flight (from the reply it read to its next push), so an update
        # lands during at most the other 3 nodes' flights: the staleness sums to at most 3 per gradient (3 less
        # the flights the end of the run cuts off, which are not recorded)
        assert 0 < res.staleness.mean() <= 3.0
    else:
        assert set(np.unique(res.staleness)) <= {4 * c for c in range(bound + 1)}
        assert bound > 0 or np.all(res.staleness == 0)


def test_staleness_sums_to_n_minus_1_per_update(client, data):
    """Notebook 08's counting argument, exact for any timing: each node gets back the w that holds its own gradient
    and always has one gradient in flight, so every update is missed by the N - 1 other nodes' gradients. Those
    still in flight at the end are not recorded: node i's read the version after its last update (0 if it never
    pushed) and missed every update since. And a node whose first reply came late (others had pushed before it
    started) did not miss the updates before its first read."""
    X, y = data
    n = 4
    res = async_sgd(X, y, n_nodes=n, lr=0.05 / n, batch_size=16, n_updates=200, client=client)
    updates = res.n_steps
    assert updates == 200 and not res.diverged
    last_read = [np.flatnonzero(res.nodes == i)[-1] + 1 if np.any(res.nodes == i) else 0 for i in range(n)]
    in_flight = sum(updates - v for v in last_read)
    before_start = sum(int(res.versions_read[res.nodes == i][0]) for i in range(n) if np.any(res.nodes == i))
    assert res.staleness.sum() + in_flight + before_start == (n - 1) * updates


def test_async_converges_and_records_every_gradient(client, data):
    X, y = data
    res = async_sgd(X, y, n_nodes=4, lr=0.05, batch_size=16, n_updates=300, seed=1, client=client)
    assert not res.diverged
    assert res.n_steps == 300 and len(res.losses) == 301 and res.weights.shape == (301, 4)
    # one record per update, each from a known node, clocks counting up per node
    assert len(res.staleness) == len(res.nodes) == 300 == res.params["gradients"]
    assert set(res.nodes) <= {0, 1, 2, 3} and len(set(res.nodes)) >= 2
    for node in set(res.nodes):
        assert np.array_equal(res.clocks[res.nodes == node], np.arange(np.sum(res.nodes == node)))
    # staleness = updates applied between the read and the arrival: in [0, updates so far). Below 0 cannot be
    # seen here (the result keeps only the records with staleness >= 0): a negative one would be a missing record,
    # which the count of 300 above catches; the upper end is the version read being >= 0
    assert np.all(res.staleness <= np.arange(300))
    assert np.all(res.versions_read + res.staleness == np.arange(300))
    replay(client, X, y, res, lr=0.05, batch_size=16, seed=1)  # and each update used the w it says it read
    # Which w each gradient meets depends on timing. At worst (nodes 1-3 stalled through the whole run, their
    # gradients of w0 applied last) the loss ends near 0.46, a 14th of the start; the noise floor (0.01) is
    # reached when the staleness stays small, as here on a quiet machine (benchmarks/stragglers.py)
    assert res.losses[-1] < res.losses[0] / 5
    # update k happens at the arrival of gradient k: the server's clock gives both
    assert np.allclose(res.elapsed[1:], res.arrival_times, rtol=1e-9, atol=1e-12)
    assert res.updates_per_second == pytest.approx(300 / res.arrival_times[-1], rel=1e-9)
    assert np.array_equal(res.messages, 2 * np.arange(301))


@pytest.mark.parametrize("bound", [1, 3])
def test_staleness_bound_holds(client, data, bound):
    X, y = data
    res = async_sgd(X, y, n_nodes=4, lr=0.05, batch_size=16, n_updates=80, staleness_bound=bound, client=client)
    assert res.n_steps == 80 and len(res.staleness) == 4 * 80  # every node's gradient in every update
    # staleness in gradients: whole clocks of 4 gradients, at most `bound` of them (>= 0 holds by construction: the
    # count above catches a dropped record)
    assert res.staleness.max() <= 4 * bound and np.all(res.staleness % 4 == 0)
    assert res.losses[-1] < res.losses[0] / 10
    # update t combines clock t of every node, in node order, each computed at a version >= t - bound
    assert np.array_equal(res.nodes, np.tile(np.arange(4), 80))
    assert np.array_equal(res.clocks, np.repeat(np.arange(80), 4))
    assert np.all(res.versions_read >= res.clocks - bound)
    assert np.array_equal(res.staleness, 4 * (res.clocks - res.versions_read))
    assert np.array_equal(res.staleness, gradients_missed(res))
    replay(client, X, y, res, lr=0.05, batch_size=16, seed=0)


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
    assert res.diverged and res.n_steps < 2000
    assert res.diverged_at in (res.n_steps, res.n_steps + 1)  # the update that diverged ends the record


def test_a_straggler_does_not_hold_up_the_others(client, data):
    """Node 1's worker is held for the whole run (faults.hold_worker: its nodes cannot push, however the machine is
    loaded): node 0 makes every update alone, never stale, and the run is SGD on node 0's shard."""
    X, y = data
    Xn, yn = dml.to_numpy(X, y)
    p = dml.place_shards(client, X, y, n_nodes=2)
    assert p.workers[0] != p.workers[1]  # two workers (the fault tests restore them)
    faults.hold_worker(p.workers[1], client, seconds=30)  # a server that waited for node 1 would fail after 30 s
    try:
        res = async_sgd(X, y, n_nodes=2, lr=0.05, batch_size=16, n_updates=60, seed=2, client=client)
    finally:
        faults.reset_slowdowns(client)
    assert res.params["workers"] == p.workers and res.n_steps == 60 and not res.diverged
    assert np.array_equal(res.nodes, np.zeros(60)) and np.array_equal(res.clocks, np.arange(60))
    assert np.all(res.staleness == 0) and np.array_equal(res.versions_read, np.arange(60))
    ref = dml.sgd(Xn[p.rows[0]], yn[p.rows[0]], lr=0.05, batch_size=16, n_steps=60, seed=2)
    assert np.max(np.abs(res.weights - ref.weights)) < 1e-12


def _async_leftovers(dask_worker):
    """Server actors, node-loop tasks and threads on a worker."""
    import threading

    from dml_lesson.variants.async_actor import AsyncServer

    servers = sum(isinstance(a, AsyncServer) for a in dask_worker.state.actors.values())
    loops = sum(str(k).startswith("async-nodes-") for k in dask_worker.state.tasks)
    return servers, loops, threading.active_count()


def test_no_loop_thread_or_actor_left_behind(client, data):
    import gc

    X, y = data
    async_sgd(X, y, n_nodes=4, lr=0.05, batch_size=16, n_updates=20, client=client)  # warm up: shards, threads
    gc.collect()
    before = client.run(_async_leftovers)
    gc.disable()  # only the run's own releases may free the server actor: a collection would hide a missing one
    try:
        for bound in [None, 2, None]:
            async_sgd(X, y, n_nodes=4, lr=0.05, batch_size=16, n_updates=50, staleness_bound=bound, client=client)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:  # releasing an actor reaches its worker a moment later
            after = client.run(_async_leftovers)
            if all(s == 0 and n == 0 and t <= before[a][2] for a, (s, n, t) in after.items()):
                break
            time.sleep(0.1)
    finally:
        gc.enable()
    assert after.keys() == before.keys()
    assert {a: (s, n) for a, (s, n, _) in after.items()} == {a: (0, 0) for a in after}
    assert all(after[a][2] <= before[a][2] for a in before)
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
    from dml_lesson.teaching.widgets import asynchronous as widgets_async

    X, y = data
    initial = experiments.staleness_runs(X, y, 2, n_gradients=200, client=client)
    e = widgets_async.staleness_explorer(X, y, bound="2", n_gradients=200, client=client, initial=initial)
    assert e.redraws == 1 and "bound 2: τ at most" in e.status.value
    # the keyboard reaches 0 (synchronous) and none (asynchronous) from the default in at most 3 presses each
    options = list(e.controls["bound"].options)
    assert options[0] == "0" and options[-1] == "none"
    assert max(abs(options.index(v) - options.index("2")) for v in options) <= 3
    e.controls["bound"].value = "0"
    assert e.redraws == 2 and "bound 0: τ at most 0 gradients," in e.status.value
    e.controls["bound"].value = "none"
    assert e.redraws == 3 and "bound" not in e.status.value.split("<small>")[0].replace("no bound", "")
