"""Local SGD (federated averaging): talk to the server once every ``H`` steps instead of every step (notebook 08).

Each round the server sends ``w`` to every node. A node takes ``H = local_steps`` SGD steps on its own shard,
starting from ``w`` (mini-batch ``t`` of node ``i`` drawn with the seed ``(seed, i, t)``, ``t`` counting every
local step, as in :func:`~dml_lesson.core.optim.minibatch_indices`), and sends back what it did. The server averages
the nodes' models, weighted by shard size (``average="shard"``, McMahan et al.'s FedAvg), or counting each
node by its batch rows (``average="plain"``: the plain mean of the models when every node uses a full batch).

What travels up is the model's change, not the model: node ``i`` sends ``G_i``, the sum over its ``H`` steps of
its mini-batch gradient sums, and its batch rows ``b_i``; its local model is ``w - lr * G_i / b_i``, so the
weighted mean of the models is ``w - lr * sum_i a_i G_i / b_i``, computed from the ``G_i`` without rounding the
models first. With ``H = 1`` and ``average="plain"`` the update is ``w - lr * sum_i G_i / sum_i b_i``: the
synchronous server's step, and :func:`~dml_lesson.ps.server.distributed_sgd` bit for bit.

Messages per epoch fall by ``H``: a round moves ``2 * n_nodes`` messages, as a synchronous step does, but uses
``H`` times the rows. The price shows with non-IID shards: in ``H`` steps each local model drifts towards the
minimum of its own shard, and the average of drifted models is not the minimum of the whole.
"""

from __future__ import annotations

import uuid
from concurrent.futures import TimeoutError as FuturesTimeout
from typing import Any

import numpy as np
from distributed import Client

from ..cluster.client import check_client, restart_advice
from ..cluster.shards import Placement, place_shards
from ..core.checks import check_choice, check_int, check_seed
from ..core.layout import Layout
from ..core.models import Model
from ..core.optim import _check_common, check_xy, minibatch_indices
from ..core.result import Recorder, TrainingResult
from ..ps.comm import serialized_nbytes
from ..ps.node import NodeConfig, NodeReply, aligned
from ..ps.server import _total, combine

AVERAGES = ("shard", "plain")
TRANSPORTS = ("actors", "tasks")
ROUND_TIMEOUT = 120.0
"""Seconds the server waits for its nodes in one round before it stops with a clear error."""


def local_sgd(
    X: Any,
    y: Any,
    n_nodes: int = 4,
    lr: float = 0.05,
    batch_size: int = 32,
    local_steps: int = 4,
    n_rounds: int = 50,
    seed: int = 0,
    layout: str | Layout = "contiguous",
    client: Client | None = None,
    *,
    average: str = "shard",
    w0: Any = None,
    model: str | Model = "linear",
    transport: str = "actors",
) -> TrainingResult:
    """Local SGD / federated averaging on the cluster (notebook 08).

    Parameters
    ----------
    X, y, n_nodes, lr, batch_size, seed, layout, client, w0, model
        As in :func:`~dml_lesson.ps.server.distributed_sgd` (``batch_size`` is per node and per local step).
    local_steps : int
        ``H``, local SGD steps per round, >= 1. ``H = 1`` is distributed SGD.
    n_rounds : int
        Rounds of communication, >= 0. ``losses`` has ``n_rounds + 1`` entries: the full-data loss before
        each round and at the end.
    average : ``"shard"`` or ``"plain"``
        Weight of each node's model: its share of the rows (FedAvg), or its batch rows (the plain mean).
    transport : ``"actors"`` or ``"tasks"``
        How the server reaches the nodes (as in :mod:`dml_lesson.ps.transport`); the results are identical.

    Returns
    -------
    TrainingResult
        One entry per round; ``params["messages_per_step"]`` is ``2 * n_nodes`` and ``rows_per_step`` counts
        the rows of all ``H`` local steps, so ``epochs`` and messages per epoch are comparable with SGD.
    """
    X, y = check_xy(X, y, allow_dask=True)
    n_rounds = check_int("n_rounds", n_rounds, low=0)
    lr, n_rounds, w, model = _check_common(lr, n_rounds, w0, X.shape[1], model)
    local_steps = check_int("local_steps", local_steps, low=1)
    seed = check_seed("seed", seed)
    average = check_choice("average", average, AVERAGES)
    transport = check_choice("transport", transport, TRANSPORTS)
    n_blocks = X.numblocks[0] if hasattr(X, "numblocks") else len(y)
    why = "the number of blocks of X" if hasattr(X, "numblocks") else "the number of rows"
    n_nodes = check_int("n_nodes", n_nodes, low=1, high=n_blocks, why=why)
    client = check_client(client)
    placement = place_shards(client, X, y, n_nodes, layout)
    batch_size = check_int("batch_size", batch_size, low=1, high=max(placement.sizes), why="the largest shard's rows")
    config = NodeConfig(model, batch_size, seed, None, uuid.uuid4().hex)
    nodes = _connect(client, placement, transport)
    sizes = placement.sizes
    rows_per_round = local_steps * sum(min(batch_size, s) for s in sizes)
    params = {"lr": lr, "n_rounds": n_rounds, "local_steps": local_steps, "n_nodes": n_nodes,
              "batch_size": batch_size, "seed": seed, "average": average, "transport": transport,
              "shard_sizes": sizes, "workers": list(placement.workers), "messages_per_step": 2 * n_nodes}
    rec = Recorder("local_sgd", X.shape[1], rows_per_round, len(y), params)
    for rnd in range(n_rounds + 1):  # the server loop: send w, H local steps on every node, average
        need = rnd < n_rounds
        replies = nodes(config, w, rnd, local_steps, lr, need)
        if not rec.record(w, _total(r.loss_sum for r in replies) / sum(sizes)) or not need:
            break
        with np.errstate(all="ignore"):
            w = w - lr * average_update(replies, sizes, average)
        sent = n_nodes * serialized_nbytes((w, rnd, local_steps, lr, need))
        rec.step_done(sent, sum(serialized_nbytes(tuple(r)) for r in replies))
    return rec.result()


def average_update(replies: list[NodeReply], sizes: list[int], average: str = "shard") -> np.ndarray:
    """The server's step direction from the nodes' summed gradients: ``new w = w - lr * direction``.

    ``"plain"``: ``sum_i G_i / sum_i b_i`` (the synchronous server's combine, in node order). ``"shard"``:
    ``sum_i (n_i / n) * G_i / b_i``, the shard-weighted mean of the local models' changes.
    """
    if average == "plain":
        return combine(replies, "mean")
    total = sum(sizes)
    return _total((n / total) * (r.grad_sum / r.count) for r, n in zip(replies, sizes))


def local_round(shard: tuple[np.ndarray, np.ndarray], config: NodeConfig, node: int, w: np.ndarray, rnd: int,
                local_steps: int, lr: float, need_update: bool = True) -> NodeReply:
    """One node's round, a pure function of its inputs: ``H`` SGD steps from ``w`` on its shard.

    Returns ``(G, b, loss sum)``: the sum of its ``H`` mini-batch gradient sums, its batch rows, and its
    shard's loss sum at ``w`` (so the server can record the full-data loss before the round).
    """
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


class LocalNode:
    """A Dask actor holding one node's shard: a round is one direct call (no scheduler round trip)."""

    def __init__(self, shard: tuple[np.ndarray, np.ndarray], node: int) -> None:
        self.shard, self.node = aligned(shard), node

    def round(self, config: NodeConfig, w: np.ndarray, rnd: int, local_steps: int, lr: float,
              need_update: bool) -> NodeReply:
        """Run :func:`local_round` on the shard held in memory."""
        return local_round(self.shard, config, self.node, w, rnd, local_steps, lr, need_update)


def _connect(client: Client, placement: Placement, transport: str) -> Any:
    """A function ``(config, w, round, H, lr, need) -> replies in node order`` for the chosen transport."""
    pairs = list(zip(placement.futures, placement.workers))
    if transport == "actors":
        actors = placement.extras.get("local_actors")
        if actors is None:
            futures = [client.submit(LocalNode, shard, node, workers=[addr], allow_other_workers=True, actor=True)
                       for node, (shard, addr) in enumerate(pairs)]
            actors = [_wait(f, "start") for f in futures]
            placement.extras["local_actors"], placement.extras["local_actor_futures"] = actors, futures

        def by_actors(config, w, rnd, local_steps, lr, need):
            calls = [a.round(config, w, rnd, local_steps, lr, need) for a in actors]
            return [NodeReply(*_wait(c, rnd)) for c in calls]

        return by_actors

    def by_tasks(config, w, rnd, local_steps, lr, need):
        calls = [client.submit(local_round, shard, config, node, w, rnd, local_steps, lr, need,
                               workers=[addr], allow_other_workers=True, pure=False)
                 for node, (shard, addr) in enumerate(pairs)]
        return [NodeReply(*_wait(c, rnd)) for c in calls]

    return by_tasks


def _wait(call: Any, rnd: int | str) -> Any:
    try:
        return call.result(timeout=ROUND_TIMEOUT)
    except (TimeoutError, FuturesTimeout) as exc:
        raise TimeoutError(f"the nodes did not answer round {rnd} within {ROUND_TIMEOUT:.0f} s: the cluster may be "
                           f"stuck or overloaded; {restart_advice()}") from exc
