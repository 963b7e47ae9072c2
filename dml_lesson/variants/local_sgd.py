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

Local SGD *is* the synchronous server with local steps: :func:`local_sgd` runs
:func:`~dml_lesson.ps.server.distributed_sgd` with ``local_steps=H`` (the nodes' rounds are
:func:`~dml_lesson.ps.node.local_round`) and ``aggregate="shard"`` or ``"mean"``, so it has the same nodes,
transports and recovery from lost workers as every synchronous run.

Messages per epoch fall by ``H``: a round moves ``2 * n_nodes`` messages, as a synchronous step does, but uses
``H`` times the rows. The price shows with non-IID shards: in ``H`` steps each local model drifts towards the
minimum of its own shard, and the average of drifted models is not the minimum of the whole.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from distributed import Client

from ..core.checks import check_choice, check_int
from ..core.layout import Layout
from ..core.models import Model
from ..core.result import TrainingResult
from ..core.settings import AVERAGES
from ..ps.server import distributed_sgd

AGGREGATE_OF = {"shard": "shard", "plain": "mean"}
"""The server's aggregation rule for each way of averaging the nodes' models."""


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
        ``params["recoveries"]`` lists the rounds at which a lost worker was replaced (the round was repeated,
        with the same result).
    """
    n_rounds = check_int("n_rounds", n_rounds, low=0)
    average = check_choice("average", average, AVERAGES)
    res = distributed_sgd(X, y, n_nodes, lr, batch_size, n_rounds, seed, client, aggregate=AGGREGATE_OF[average],
                          w0=w0, model=model, layout=layout, transport=transport, local_steps=local_steps)
    p = res.params
    params = {"lr": p["lr"], "n_rounds": p["n_steps"], "local_steps": p["local_steps"], "n_nodes": p["n_nodes"],
              "batch_size": p["batch_size"], "seed": p["seed"], "average": average, "transport": p["transport"],
              "shard_sizes": p["shard_sizes"], "workers": p["workers"], "messages_per_step": 2 * p["n_nodes"],
              "recoveries": p["recoveries"]}
    return dataclasses.replace(res, method="local_sgd", params=params)
