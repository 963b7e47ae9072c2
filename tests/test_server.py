"""The parameter server: equal to single-machine GD/SGD, for every node count, input kind and transport."""

import warnings

import numpy as np
import pytest

import dml_lesson as dml

pytestmark = pytest.mark.cluster


@pytest.mark.parametrize("transport", ["actors", "tasks"])
@pytest.mark.parametrize("kind", ["numpy", "dask"])
@pytest.mark.parametrize("n_nodes", [1, 2, 3, 4])
def test_distributed_gd_equals_gd_step_by_step(client, small, n_nodes, kind, transport):
    X, y, Xn, yn, _ = small
    data = (Xn, yn) if kind == "numpy" else (X, y)
    gd = dml.gradient_descent(Xn, yn, lr=0.1, n_steps=25)
    res = dml.distributed_gd(*data, n_nodes=n_nodes, lr=0.1, n_steps=25, client=client, transport=transport)
    assert res.weights.shape == gd.weights.shape
    assert np.max(np.abs(res.weights - gd.weights)) < 1e-12
    assert np.max(np.abs(res.losses - gd.losses)) < 1e-12
    sizes = res.params["shard_sizes"]
    assert sum(sizes) == 400 and len(sizes) == n_nodes
    if kind == "numpy":
        assert max(sizes) - min(sizes) <= 1


def test_transports_agree_bit_for_bit(client, small):
    X, y, *_ = small
    kw = dict(n_nodes=3, lr=0.05, batch_size=16, n_steps=30, seed=2, client=client, layout="shuffled")
    a = dml.distributed_sgd(X, y, transport="actors", **kw)
    b = dml.distributed_sgd(X, y, transport="tasks", **kw)
    assert np.array_equal(a.weights, b.weights) and np.array_equal(a.losses, b.losses)


@pytest.mark.parametrize("n_nodes", [2, 4])
def test_sum_aggregate_with_equal_shards_is_mean_with_n_times_lr(client, small, n_nodes):
    _, _, Xn, yn, _ = small
    s = dml.distributed_gd(Xn, yn, n_nodes=n_nodes, lr=0.02, n_steps=20, aggregate="sum", client=client)
    m = dml.distributed_gd(Xn, yn, n_nodes=n_nodes, lr=0.02 * n_nodes, n_steps=20, client=client)
    assert np.max(np.abs(s.weights - m.weights)) < 1e-12


def test_sum_aggregate_diverges_as_nodes_are_added(client, small):
    _, _, Xn, yn, _ = small
    lr = 0.6 / dml.lipschitz_constant(Xn)  # stable for the mean, 2.4x the bound for the sum of 4
    assert not dml.distributed_gd(Xn, yn, n_nodes=4, lr=lr, n_steps=200, client=client).diverged
    bad = dml.distributed_gd(Xn, yn, n_nodes=4, lr=lr, n_steps=200, aggregate="sum", client=client)
    assert bad.diverged and bad.status.startswith("diverged at step")


@pytest.mark.parametrize("layout", ["contiguous", "skewed", "noniid"])
def test_sgd_with_batch_at_least_every_shard_is_gd(client, small, layout):
    X, y, *_ = small
    gd = dml.distributed_gd(X, y, n_nodes=3, lr=0.1, n_steps=15, client=client, layout=layout)
    biggest = max(gd.params["shard_sizes"])
    sgd = dml.distributed_sgd(X, y, n_nodes=3, lr=0.1, batch_size=biggest, n_steps=15, client=client,
                              layout=layout)
    assert np.array_equal(gd.weights, sgd.weights)


def test_one_node_distributed_sgd_is_sgd(client, small):
    _, _, Xn, yn, _ = small
    a = dml.sgd(Xn, yn, lr=0.05, batch_size=20, n_steps=60, seed=9, schedule="inv_sqrt")
    b = dml.distributed_sgd(Xn, yn, n_nodes=1, lr=0.05, batch_size=20, n_steps=60, seed=9,
                            schedule="inv_sqrt", client=client)
    # Same batches, same arithmetic; only the BLAS of another process may round differently.
    assert np.max(np.abs(a.weights - b.weights)) < 1e-12


def test_distributed_sgd_repeats_with_its_seed(client, small):
    X, y, *_ = small
    kw = dict(n_nodes=4, lr=0.05, batch_size=8, n_steps=40, client=client)
    a = dml.distributed_sgd(X, y, seed=1, **kw)
    b = dml.distributed_sgd(X, y, seed=1, **kw)
    c = dml.distributed_sgd(X, y, seed=2, **kw)
    assert np.array_equal(a.weights, b.weights)
    assert not np.array_equal(a.weights, c.weights)
    assert a.rows_per_step == 32 and a.epochs[-1] == pytest.approx(40 * 32 / 400)


def test_more_nodes_than_workers(client, small):
    X, y, Xn, yn, _ = small
    n_workers = len(dml.worker_addresses(client))
    res = dml.distributed_gd(X, y, n_nodes=16, lr=0.1, n_steps=5, client=client)
    gd = dml.gradient_descent(Xn, yn, lr=0.1, n_steps=5)
    assert 16 > n_workers and len(set(res.params["workers"])) == n_workers
    assert np.max(np.abs(res.weights - gd.weights)) < 1e-12


def test_shards_are_pinned_one_per_node(client):
    from dml_lesson.cluster.shards import place_shards

    # data no other test uses: the placement is built here, not one cached by an earlier test (whose shards
    # later runs may have copied or moved)
    X, y, _ = dml.make_regression(400, 3, noise=0.1, seed=23)
    p = place_shards(client, X, y, 4, "contiguous")
    workers = dml.worker_addresses(client)
    assert p.workers == [workers[i % len(workers)] for i in range(4)]
    who_has = client.who_has(p.futures)
    assert [who_has[f.key] for f in p.futures] == [(addr,) for addr in p.workers]
    assert place_shards(client, X, y, 4, "contiguous") is p  # reused by the next run


def test_result_records_time_and_bytes(client, small):
    import time

    from dml_lesson.cluster import faults

    X, y, *_ = small
    hold = 0.3
    held = dml.place_shards(client, X, y, 2).workers[1]  # node 1's worker (the run reuses this placement)

    def hold_step_4(step: int) -> None:
        if step == 4:  # node 1 cannot answer step 4 for `hold` s, however busy the machine
            faults.hold_worker(held, client, seconds=hold)

    started = time.perf_counter()
    try:
        res = dml.distributed_gd(X, y, n_nodes=2, lr=0.1, n_steps=10, client=client, on_step=hold_step_4)
    finally:
        faults.reset_slowdowns(client)
    wall = time.perf_counter() - started
    # each step's own time: the held one took the hold, and the steps add up to no more than the whole run
    assert res.step_times.shape == (10,) and res.step_times[4] >= hold and res.step_times.sum() <= wall
    assert np.all(res.bytes_sent >= dml.formula_nbytes(2, 4)) and np.all(res.bytes_received >= 2 * 4 * 8)
    assert res.elapsed.shape == (11,)


def test_logistic_model_on_the_cluster(client):
    X, y, w_true = dml.make_classification(600, 2, seed=1, class_sep=2.0)
    Xn, yn = dml.to_numpy(X, y)
    gd = dml.gradient_descent(Xn, yn, lr=0.5, n_steps=30, model="logistic")
    res = dml.distributed_gd(X, y, n_nodes=3, lr=0.5, n_steps=30, model="logistic", client=client)
    assert np.max(np.abs(res.weights - gd.weights)) < 1e-12
    assert res.losses[-1] < res.losses[0]


def test_distributed_divergence_is_quiet(client, small):
    X, y, *_ = small
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        res = dml.distributed_gd(X, y, n_nodes=2, lr=100.0, n_steps=500, client=client)
    assert res.diverged and res.n_steps < 500 and np.all(np.isfinite(res.losses))
