"""A dask array mixed with a numpy one trains exactly as two dask arrays do (and as two numpy ones, when the
shards are the same rows)."""

import numpy as np
import pytest

import dml_lesson as dml

pytestmark = pytest.mark.cluster

RUNS = {
    "distributed_gd": lambda X, y, **kw: dml.distributed_gd(X, y, n_nodes=4, lr=0.1, n_steps=10, **kw),
    "distributed_sgd": lambda X, y, **kw: dml.distributed_sgd(X, y, n_nodes=4, lr=0.1, batch_size=8, n_steps=10, **kw),
    "local_sgd": lambda X, y, **kw: dml.local_sgd(X, y, n_nodes=4, lr=0.1, batch_size=8, local_steps=2, n_rounds=5,
                                                  **kw),
}


@pytest.mark.parametrize("method", list(RUNS))
@pytest.mark.parametrize("mix", ["dask X, numpy y", "numpy X, dask y"])
def test_a_mix_of_dask_and_numpy_trains_as_both_dask_and_both_numpy(client, small, method, mix):
    X, y, Xn, yn, _ = small  # 400 rows in 16 blocks of 25: each of 4 nodes gets rows 100 i to 100 i + 99 either way
    run = RUNS[method]
    mixed = run(X, yn, client=client) if mix.startswith("dask X") else run(Xn, y, client=client)
    both_dask, both_numpy = run(X, y, client=client), run(Xn, yn, client=client)
    assert np.array_equal(mixed.weights, both_dask.weights) and np.array_equal(mixed.losses, both_dask.losses)
    assert np.max(np.abs(mixed.weights - both_numpy.weights)) < 1e-12


@pytest.mark.parametrize("mix", ["dask X, numpy y", "numpy X, dask y"])
def test_the_numpy_array_of_a_mix_is_cut_into_the_dask_arrays_blocks(client, small, mix):
    X, y, Xn, yn, _ = small
    kw = dict(n_nodes=3, lr=0.1, batch_size=8, n_steps=5, client=client, layout="shuffled")
    mixed = dml.distributed_sgd(X, yn, **kw) if mix.startswith("dask X") else dml.distributed_sgd(Xn, y, **kw)
    both_dask = dml.distributed_sgd(X, y, **kw)
    assert mixed.params["shard_sizes"] == both_dask.params["shard_sizes"] != [134, 133, 133]  # whole blocks of 25
    assert np.array_equal(mixed.weights, both_dask.weights)
