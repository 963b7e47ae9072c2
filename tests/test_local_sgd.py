"""Local SGD: one local step is distributed SGD bit for bit, one node is SGD, transports agree, messages per
epoch fall by H, and non-IID shards show the drift."""

import numpy as np
import pytest

import dml_lesson as dml
from dml_lesson.teaching import experiments
from dml_lesson.variants.local_sgd import local_sgd

pytestmark = pytest.mark.cluster


@pytest.fixture(scope="module")
def data():
    return dml.make_regression(2000, 3, noise=0.1, seed=3, block_size=125)[:2]


@pytest.mark.parametrize("layout", ["contiguous", "noniid"])
@pytest.mark.parametrize("n_nodes", [1, 3, 4])
def test_one_local_step_is_distributed_sgd_bit_for_bit(client, data, n_nodes, layout):
    X, y = data
    kw = dict(n_nodes=n_nodes, lr=0.05, batch_size=16, seed=2, layout=layout, client=client)
    sync = dml.distributed_sgd(X, y, n_steps=30, **kw)
    res = local_sgd(X, y, local_steps=1, n_rounds=30, average="plain", **kw)
    assert np.array_equal(res.weights, sync.weights) and np.array_equal(res.losses, sync.losses)


def test_shard_weights_equal_plain_mean_for_equal_shards(client, data):
    X, y = data
    kw = dict(n_nodes=4, lr=0.05, batch_size=16, local_steps=5, n_rounds=20, client=client)
    a, b = local_sgd(X, y, average="shard", **kw), local_sgd(X, y, average="plain", **kw)
    assert a.params["shard_sizes"] == [500] * 4
    assert np.max(np.abs(a.weights - b.weights)) < 1e-12


def test_one_node_is_sgd_at_the_round_boundaries(client, data):
    X, y = data
    Xn, yn = dml.to_numpy(X, y)
    ref = dml.sgd(Xn, yn, lr=0.05, batch_size=16, n_steps=60, seed=1)
    res = local_sgd(X, y, n_nodes=1, lr=0.05, batch_size=16, local_steps=6, n_rounds=10, seed=1, client=client)
    assert np.max(np.abs(res.weights - ref.weights[::6])) < 1e-12


def test_transports_agree_and_runs_repeat_bit_for_bit(client, data):
    X, y = data
    kw = dict(n_nodes=3, lr=0.05, batch_size=16, local_steps=4, n_rounds=12, seed=9, client=client, layout="shuffled")
    a, b, c = local_sgd(X, y, **kw), local_sgd(X, y, transport="tasks", **kw), local_sgd(X, y, **kw)
    assert np.array_equal(a.weights, b.weights) and np.array_equal(a.weights, c.weights)


@pytest.mark.parametrize("H", [1, 2, 5, 10])
def test_messages_per_epoch_fall_by_H(client, data, H):
    X, y = data
    res = local_sgd(X, y, n_nodes=4, lr=0.05, batch_size=25, local_steps=H, n_rounds=20 // H, client=client)
    assert res.params["messages_per_step"] == 8 and res.rows_per_step == 4 * 25 * H
    messages = res.params["messages_per_step"] * res.n_steps
    assert res.epochs[-1] == pytest.approx(1.0)  # 20 local steps of 4 x 25 rows = 2000 rows
    assert messages == 8 * 20 // H  # one epoch: 160 messages for SGD, 160 / H for local SGD
    assert np.all(res.bytes_received > 0) and len(res.bytes_sent) == res.n_steps


def test_noniid_shards_drift_with_many_local_steps(client, data):
    X, y = data
    kw = dict(n_nodes=4, lr=0.2, batch_size=16, n_rounds=32, client=client, layout="noniid")
    one = local_sgd(X, y, local_steps=1, **{**kw, "n_rounds": 512})
    many = local_sgd(X, y, local_steps=16, **kw)  # the same rows used, 16 times fewer messages
    assert many.epochs[-1] == one.epochs[-1]
    assert many.losses[-1] > 1.05 * one.losses[-1]  # the average of drifted models misses the minimum
    iid = local_sgd(X, y, local_steps=16, **{**kw, "layout": "contiguous"})
    assert iid.losses[-1] < 1.01 * one.losses[-1] < many.losses[-1]  # IID shards: no drift


@pytest.mark.parametrize(
    "kwargs, error, words",
    [
        ({"local_steps": 0}, ValueError, "local_steps must be >= 1, got 0"),
        ({"local_steps": 1.5}, TypeError, "local_steps must be an integer"),
        ({"n_rounds": -1}, ValueError, "n_rounds must be >= 0, got -1"),
        ({"average": "mean"}, ValueError, "average must be one of 'shard', 'plain'"),
        ({"transport": "mpi"}, ValueError, "transport must be one of"),
        ({"n_nodes": 17}, ValueError, "n_nodes must be between 1 and 16"),
        ({"batch_size": 10_000}, ValueError, "batch_size must be between 1 and 500"),
    ],
)
def test_bad_input_named_errors(client, data, kwargs, error, words):
    X, y = data
    with pytest.raises(error) as info:
        local_sgd(X, y, client=client, **kwargs)
    assert words in str(info.value)


def test_local_steps_explorer(client, data):
    from dml_lesson.teaching.widgets import asynchronous as widgets_async

    X, y = data
    initial = experiments.local_runs(X, y, 16, "noniid", client=client)
    e = widgets_async.local_steps_explorer(X, y, local_steps=16, layout="noniid", client=client, initial=initial)
    assert e.redraws == 1 and "H = 16: 16 messages per epoch" in e.status.value
    assert "H = 1 (distributed SGD): 250 messages per epoch" in e.status.value
    # the keyboard steps through H = 1, 2, 4, ..., 32: every value from the default in at most 4 presses
    options = list(e.controls["local_steps"].options)
    assert options[0] == 1 and all(b == 2 * a for a, b in zip(options, options[1:]))
    assert max(abs(options.index(v) - options.index(16)) for v in options) <= 4
    before = e.png
    e.controls["local_steps"].value = 4
    assert e.redraws == 2 and e.png != before and "H = 4: 62 messages per epoch" in e.status.value
    e.controls["layout"].value = "IID (contiguous)"
    assert e.redraws == 3 and e.status.value.count("IID (contiguous)") == 1
