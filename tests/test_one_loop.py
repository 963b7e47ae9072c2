"""One training loop: local SGD is the synchronous server with local steps (``distributed_sgd(local_steps=H)``).

The old local SGD had its own actors and loop; it lives on here as a small reference (:func:`old_local_sgd`, the
round and the average exactly as they were), run in this process on the same shards. The new local SGD must equal
it bit for bit, equal ``distributed_sgd`` with ``H = 1``, give the same weights on both transports, and survive a
killed worker with the same weights (the synchronous server's recovery, which the old loop did not have).
"""

import numpy as np
import pytest

import dml_lesson as dml
from dml_lesson.cluster.client import restore_workers
from dml_lesson.cluster.faults import kill_at, wait_until_replaced
from dml_lesson.cluster.shards import place_shards
from dml_lesson.core.models import get_model
from dml_lesson.core.optim import minibatch_indices
from dml_lesson.ps import node as node_module
from dml_lesson.ps.node import NodeConfig, NodeReply, aligned, node_step
from dml_lesson.ps.server import combine
from dml_lesson.variants.local_sgd import local_sgd


@pytest.fixture(scope="module")
def data():
    return dml.make_regression(2000, 3, noise=0.1, seed=3, block_size=125)[:2]


@pytest.fixture(scope="module")
def labels():
    return dml.make_classification(1200, 3, seed=5, block_size=100)[:2]


# --- the old local SGD (dml_lesson/variants/local_sgd.py at a93462c), kept as the reference -------------------------

def old_local_round(shard, config, node, w, rnd, local_steps, lr, need_update=True):
    X, y = aligned(shard)
    model = config.model
    with np.errstate(all="ignore"):
        loss_sum = model.loss_sum(w, X, y)
        if not need_update:
            return NodeReply(None, 0, loss_sum)
        local, total, count = w, None, 0
        for h in range(local_steps):
            idx = minibatch_indices(len(y), config.batch_size, config.seed, node, rnd * local_steps + h)
            grad_sum = model.sums(local, X[idx], y[idx])[1]
            count = len(y) if isinstance(idx, slice) else len(idx)
            local = local - lr * (grad_sum / count)
            total = grad_sum if total is None else total + grad_sum
    return NodeReply(total, count, loss_sum)


def old_total(values):
    it = iter(values)
    total = next(it)
    for v in it:
        total = total + v
    return total


def old_average_update(replies, sizes, average):
    if average == "plain":
        return old_total(r.grad_sum for r in replies) / sum(r.count for r in replies)
    total = sum(sizes)
    return old_total((n / total) * (r.grad_sum / r.count) for r, n in zip(replies, sizes))


def old_local_sgd(client, X, y, n_nodes, lr, batch_size, local_steps, n_rounds, seed=0, layout="contiguous",
                  average="shard", model="linear"):
    """The old server loop, in this process, on the shards the cluster holds: (weights, losses)."""
    placement = place_shards(client, X, y, n_nodes, layout)
    shards, sizes = client.gather(placement.futures), placement.sizes
    config = NodeConfig(get_model(model), batch_size, seed)
    w, weights, losses = np.zeros(X.shape[1]), [], []
    for rnd in range(n_rounds + 1):
        need = rnd < n_rounds
        replies = [old_local_round(s, config, i, w, rnd, local_steps, lr, need) for i, s in enumerate(shards)]
        weights.append(w)
        losses.append(old_total(r.loss_sum for r in replies) / sum(sizes))
        if not need:
            break
        with np.errstate(all="ignore"):
            w = w - lr * old_average_update(replies, sizes, average)
    return np.array(weights), np.array(losses)


# The old implementation's final weights and loss for two runs, computed with the old code before the change
# (float.hex): they pin the reference above to what the old local_sgd really returned.
OLD_FINAL = {
    "shuffled-shard": (["-0x1.b5e024d3b3e7ep+0", "0x1.0c807091e08c9p-1", "-0x1.d02313e4bf92cp-1",
                        "-0x1.9259bd7014017p+0"], "0x1.5ff32e96fa675p-7"),
    "noniid-plain": (["-0x1.b9c4f849deee0p+0", "0x1.182e6d55c5926p-1", "-0x1.d3846b4d45be3p-1",
                      "-0x1.8fd6ea407ac25p+0"], "0x1.66c4744913148p-7"),
}
OLD_RUNS = {
    "shuffled-shard": dict(n_nodes=3, lr=0.05, batch_size=16, local_steps=4, n_rounds=12, seed=9, layout="shuffled"),
    "noniid-plain": dict(n_nodes=4, lr=0.2, batch_size=16, local_steps=5, n_rounds=10, layout="noniid",
                         average="plain"),
}


# --- without a cluster: the kernel and the server's rule ------------------------------------------------------------

def test_one_local_step_takes_the_synchronous_path(monkeypatch):
    def forbidden(*args, **kwargs):
        raise AssertionError("H = 1 must not run the local-steps path")

    monkeypatch.setattr(node_module, "local_round", forbidden)
    rng = np.random.default_rng(0)
    shard = (rng.normal(size=(40, 3)), rng.normal(size=40))
    w = rng.normal(size=3)
    for batch_size in (8, None):
        config = NodeConfig(get_model("linear"), batch_size, 1)
        assert config.local_steps == 1 and config.local_lr == 0.0  # the defaults: existing callers unchanged
        reply = node_step(shard, config, 2, w, 5)
        assert reply.count == (8 if batch_size else 40)


@pytest.mark.parametrize("batch_size", [7, 40, None])
def test_the_kernels_local_round_is_the_old_round(batch_size):
    rng = np.random.default_rng(1)
    shard = (rng.normal(size=(40, 3)), rng.normal(size=40))
    w = rng.normal(size=3)
    config = NodeConfig(get_model("linear"), batch_size, 4, None, "run", local_steps=6, local_lr=0.03)
    old = old_local_round(shard, NodeConfig(get_model("linear"), batch_size or 40, 4), 1, w, 3, 6, 0.03)
    new = node_step(shard, config, 1, w, 3)
    assert np.array_equal(new.grad_sum, old.grad_sum) and new.count == old.count and new.loss_sum == old.loss_sum
    assert node_step(shard, config, 1, w, 3, need_grad=False) == NodeReply(None, 0, old.loss_sum)


def test_combine_shard_is_the_old_shard_average_and_mean_sum_are_unchanged():
    rng = np.random.default_rng(2)
    replies = [NodeReply(rng.normal(size=4), c, 1.0) for c in (16, 16, 9)]
    sizes = [750, 625, 625]
    assert np.array_equal(combine(replies, "shard", sizes), old_average_update(replies, sizes, "shard"))
    assert np.array_equal(combine(replies, "mean"), old_average_update(replies, sizes, "plain"))
    assert np.array_equal(combine(replies), combine(replies, "mean", sizes))
    assert np.array_equal(combine(replies, "sum"), old_total(r.grad_sum / r.count for r in replies))
    # a node that did not answer (backup workers): the shares are of the rows of the nodes that answered
    assert np.array_equal(combine([replies[0], None, replies[2]], "shard", sizes),
                          combine([replies[0], replies[2]], "shard", [750, 625]))
    with pytest.raises(ValueError, match="pass sizes"):
        combine(replies, "shard")


@pytest.mark.parametrize(
    "kwargs, words",
    [
        ({"local_steps": 4, "schedule": "inv_sqrt"}, "schedule must be 'constant' with local_steps > 1"),
        ({"aggregate": "shard", "topology": "ring"}, "aggregate must be 'mean' or 'sum' with topology='ring'"),
        ({"local_steps": 0}, "local_steps must be >= 1, got 0"),
    ],
)
def test_bad_local_options_are_named_before_the_cluster(kwargs, words):
    X, y = np.ones((10, 2)), np.zeros(10)
    with pytest.raises(ValueError, match=words.replace("(", r"\(")):
        dml.distributed_sgd(X, y, n_nodes=2, batch_size=2, n_steps=3, client="not reached", **kwargs)


# --- on the cluster --------------------------------------------------------------------------------------------------

@pytest.mark.cluster
@pytest.mark.parametrize("transport", ["actors", "tasks"])
@pytest.mark.parametrize("n_nodes, layout", [(3, "shuffled"), (4, "noniid")])
def test_one_local_step_plain_is_distributed_sgd_exactly(client, data, transport, n_nodes, layout):
    X, y = data
    kw = dict(n_nodes=n_nodes, lr=0.05, batch_size=16, seed=2, layout=layout, client=client, transport=transport)
    sync = dml.distributed_sgd(X, y, n_steps=20, **kw)
    res = local_sgd(X, y, local_steps=1, n_rounds=20, average="plain", **kw)
    assert np.array_equal(res.weights, sync.weights) and np.array_equal(res.losses, sync.losses)
    assert np.array_equal(res.bytes_sent, sync.bytes_sent)  # the same messages, counted by the same transport
    assert np.array_equal(res.bytes_received, sync.bytes_received)


@pytest.mark.cluster
@pytest.mark.parametrize("name", list(OLD_RUNS))
def test_the_reference_is_the_old_local_sgd(client, data, name):
    weights, losses = old_local_sgd(client, *data, **OLD_RUNS[name])
    w_hex, loss_hex = OLD_FINAL[name]
    assert np.allclose(weights[-1], [float.fromhex(v) for v in w_hex], rtol=0, atol=1e-12)
    assert losses[-1] == pytest.approx(float.fromhex(loss_hex), rel=1e-12)


@pytest.mark.cluster
@pytest.mark.parametrize(
    "run",
    [
        dict(OLD_RUNS["shuffled-shard"]),
        dict(OLD_RUNS["noniid-plain"]),
        dict(n_nodes=3, lr=0.05, batch_size=16, local_steps=8, n_rounds=6, seed=1),  # unequal shards, FedAvg
        dict(n_nodes=3, lr=0.05, batch_size=700, local_steps=3, n_rounds=5),  # two shards smaller than a batch
    ],
    ids=["shuffled-shard", "noniid-plain", "unequal-shards", "whole-shards"],
)
def test_many_local_steps_equal_the_old_local_sgd_bit_for_bit(client, data, run):
    X, y = data
    weights, losses = old_local_sgd(client, X, y, **run)
    res = local_sgd(X, y, client=client, **run)
    assert np.array_equal(res.weights, weights) and np.array_equal(res.losses, losses)
    assert res.method == "local_sgd" and res.n_steps == run["n_rounds"]


@pytest.mark.cluster
def test_many_local_steps_equal_the_old_local_sgd_for_logistic_regression(client, labels):
    run = dict(n_nodes=4, lr=0.5, batch_size=20, local_steps=3, n_rounds=6, model="logistic", layout="noniid")
    weights, losses = old_local_sgd(client, *labels, **run)
    res = local_sgd(*labels, client=client, **run)
    assert np.array_equal(res.weights, weights) and np.array_equal(res.losses, losses)


@pytest.mark.cluster
def test_local_sgd_is_distributed_sgd_with_local_steps(client, data):
    X, y = data
    res = local_sgd(X, y, n_nodes=3, lr=0.05, batch_size=16, local_steps=4, n_rounds=8, seed=5, client=client)
    same = dml.distributed_sgd(X, y, n_nodes=3, lr=0.05, batch_size=16, n_steps=8, seed=5, client=client,
                               aggregate="shard", local_steps=4)
    assert np.array_equal(res.weights, same.weights) and np.array_equal(res.losses, same.losses)
    assert res.rows_per_step == same.rows_per_step == 4 * 3 * 16
    assert set(res.params) == {"lr", "n_rounds", "local_steps", "n_nodes", "batch_size", "seed", "average",
                               "transport", "shard_sizes", "workers", "messages_per_step", "recoveries"}
    assert res.params["n_rounds"] == 8 and res.params["messages_per_step"] == 6 and res.params["recoveries"] == []


@pytest.mark.cluster
def test_local_sgd_on_tasks_equals_actors(client, data):
    X, y = data
    kw = dict(n_nodes=4, lr=0.1, batch_size=16, local_steps=6, n_rounds=8, seed=7, layout="noniid", client=client)
    actors, tasks = local_sgd(X, y, **kw), local_sgd(X, y, transport="tasks", **kw)
    assert np.array_equal(actors.weights, tasks.weights) and np.array_equal(actors.losses, tasks.losses)
    assert tasks.params["transport"] == "tasks"


@pytest.mark.cluster
@pytest.mark.parametrize("transport, step, worker", [("actors", 3, 1), ("tasks", 5, 0)])
def test_local_sgd_survives_a_killed_worker_with_the_same_weights(client, data, transport, step, worker):
    X, y = data
    kw = dict(n_nodes=4, lr=0.05, batch_size=16, seed=4, client=client, transport=transport)
    restore_workers(client)
    reference = local_sgd(X, y, local_steps=5, n_rounds=8, **kw)
    fault = kill_at(step, worker=worker, client=client)
    res = dml.distributed_sgd(X, y, n_steps=8, aggregate="shard", local_steps=5, on_step=fault, **kw)
    try:
        assert len(fault.killed) == 1
        assert np.array_equal(res.weights, reference.weights) and np.array_equal(res.losses, reference.losses)
        if transport == "actors":
            assert res.params["recoveries"] == [step]
    finally:
        if fault.killed:
            wait_until_replaced(fault.killed[0], 2, client, timeout=60)
