"""The overlapped server (``distributed_sgd(..., overlap=True)``, notebook 05): each node's loss pass runs in a
thread while its reply travels, and the loss of step t arrives with the replies of step t + 1.

What must not change: the weights and the recorded losses, bit for bit, against ``overlap=False`` with the same
seed (for mini-batches, whole shards, local SGD, a codec, shards computed inline or in a thread), the step at which a
diverging run stops, and the result after a lost worker (the new nodes recompute the loss the lost ones owed: run
in a process of its own, on its own cluster, as tests/test_recovery.py does). What must be refused, by name: the
combinations the overlapped protocol does not support.

Run as a script (``python tests/test_overlap.py kill``) it is the killed-worker case: its last line is a JSON object.
"""

from __future__ import annotations

import asyncio
import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import dml_lesson as dml
from dml_lesson.core.codecs import make_codec
from dml_lesson.ps.node import NodeConfig, node_step
from dml_lesson.ps.transport import ActorStateLost, ShardActor


def same(a: dml.TrainingResult, b: dml.TrainingResult) -> bool:
    return (np.array_equal(a.weights, b.weights) and np.array_equal(a.losses, b.losses)
            and a.diverged_at == b.diverged_at)


@pytest.mark.parametrize("options", [
    {"batch_size": 8},
    {"batch_size": 100},  # every shard whole: the loss comes free with the gradient
    {"batch_size": 8, "local_steps": 3},
    {"batch_size": 8, "codec": make_codec("top-k", ratio=0.5, error_feedback=True)},  # node state between steps
    {"batch_size": 8, "layout": "skewed", "schedule": "inv_sqrt"},
])
def test_overlap_gives_the_same_weights_and_losses(client, small, options):
    X, y, *_ = small
    kw = dict(n_nodes=4, lr=0.05, n_steps=25, seed=3, client=client, **options)
    plain = dml.distributed_sgd(X, y, **kw)
    overlapped = dml.distributed_sgd(X, y, overlap=True, **kw)
    assert same(plain, overlapped) and overlapped.n_steps == 25 and not overlapped.diverged
    assert overlapped.params["overlap"] and not plain.params["overlap"]
    assert len(overlapped.step_times) == len(overlapped.bytes_sent) == 25
    assert np.array_equal(plain.bytes_sent, overlapped.bytes_sent)  # the same messages, in another order


def test_overlap_on_shards_computed_in_a_thread(client):
    """Shards above INLINE_CELLS: the gradient is computed in a thread too, beside the loss pass."""
    X, y, _ = dml.make_regression(60_000, 3, seed=1, block_size=15_000)
    kw = dict(n_nodes=2, lr=0.05, batch_size=64, n_steps=12, seed=0, client=client)
    assert same(dml.distributed_sgd(X, y, **kw), dml.distributed_sgd(X, y, overlap=True, **kw))


def test_a_diverging_overlapped_run_stops_at_the_same_step(client, small):
    """The loss of step t arrives a round later, yet the run stops with the same record and the same step."""
    X, y, *_ = small
    kw = dict(n_nodes=2, lr=1.5, batch_size=16, n_steps=80, seed=0, client=client)
    plain = dml.distributed_sgd(X, y, **kw)
    overlapped = dml.distributed_sgd(X, y, overlap=True, **kw)
    assert plain.diverged and 0 < plain.diverged_at < 80
    assert same(plain, overlapped) and overlapped.status == plain.status


def test_an_overlapped_node_returns_the_previous_loss_with_the_next_gradient():
    """The actor's protocol, without a cluster: step t's reply carries the gradient at w_t and the loss at w_(t-1)
    (NaN at step 0); the last loss is fetched apart; an actor that lost its loss pass says so."""
    Xn, yn = dml.to_numpy(*dml.make_regression(300, 2, seed=0)[:2])
    config = NodeConfig(dml.LINEAR, 16, 0)
    actor = ShardActor((Xn, yn), 0)
    actor.configure(config)
    ws = [np.zeros(3), np.full(3, 0.5), np.array([1.0, -1.0, 2.0])]

    async def run() -> tuple[list, float]:
        replies = [await actor.overlapped(w, t) for t, w in enumerate(ws)]
        return replies, (await actor.pending_loss()).loss_sum

    replies, last = asyncio.run(run())
    for t, (reply, w) in enumerate(zip(replies, ws)):
        expected = node_step((Xn, yn), config, 0, w, t)
        assert np.array_equal(reply.grad_sum, expected.grad_sum) and reply.count == expected.count == 16
        if t == 0:
            assert math.isnan(reply.loss_sum)
        else:
            assert reply.loss_sum == node_step((Xn, yn), config, 0, ws[t - 1], t - 1).loss_sum
    assert last == node_step((Xn, yn), config, 0, ws[-1], 2).loss_sum
    actor.configure(config)  # a fresh run: nothing pending, so a later step cannot be answered
    with pytest.raises(ActorStateLost):
        asyncio.run(actor.overlapped(ws[1], 1))


@pytest.mark.parametrize("options, named", [
    ({"transport": "tasks"}, "transport='tasks'"),
    ({"topology": "ring"}, "topology='ring'"),
    ({"backups": 1}, "backups=1"),
])
def test_unsupported_combinations_are_refused_by_name(options, named):
    Xn, yn = np.ones((40, 2)), np.ones(40)
    with pytest.raises(ValueError, match="overlap=True needs") as info:
        dml.distributed_sgd(Xn, yn, n_nodes=2, overlap=True, **options)
    assert named in str(info.value)


@pytest.mark.parametrize("bad", ["yes", 1, None])
def test_overlap_must_be_a_bool(bad):
    with pytest.raises(ValueError, match="overlap must be True or False"):
        dml.distributed_sgd(np.ones((40, 2)), np.ones(40), n_nodes=2, overlap=bad)


@pytest.mark.cluster
@pytest.mark.slow
def test_an_overlapped_run_survives_a_lost_worker():
    """A worker killed before step 10 (mid-run) and, in another run, before the last step: the new nodes
    recompute the loss the lost ones owed, and both runs end as the run without a fault did."""
    proc = subprocess.run([sys.executable, __file__, "kill"], capture_output=True, text=True, timeout=240,
                          cwd=Path(__file__).parent.parent)
    assert proc.returncode == 0, f"failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["killed"] == [1, 1], out
    assert out["recoveries"] == [[10], [20]], out
    assert out["same"] == [True, True], out


def kill_case() -> dict:
    """Two overlapped runs on a cluster of this process's own, a worker killed in each; compared with a plain run."""
    from dml_lesson.cluster import faults

    client = dml.get_client()
    try:
        X, y, _ = dml.make_regression(4000, 5, seed=0, block_size=500)
        kw = dict(n_nodes=4, lr=0.05, batch_size=16, n_steps=20, seed=1, client=client)
        reference = dml.distributed_sgd(X, y, **kw)
        out: dict = {"killed": [], "recoveries": [], "same": []}
        for step in (10, 20):
            fault = faults.kill_at(step, worker=0, client=client)
            res = dml.distributed_sgd(X, y, overlap=True, on_step=fault, **kw)
            out["killed"].append(len(fault.killed))
            out["recoveries"].append(res.params["recoveries"])
            out["same"].append(same(reference, res))
        return out
    finally:
        dml.close_client()


if __name__ == "__main__" and sys.argv[1:] == ["kill"]:
    print(json.dumps(kill_case()))
