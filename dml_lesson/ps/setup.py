"""The setup every distributed run shares: check the inputs, reach the cluster, place the shards (notebooks 04-08).

A run starts the same way whichever loop then drives it (the synchronous server of :mod:`dml_lesson.ps.server`,
local SGD through it, or the asynchronous server of :mod:`dml_lesson.variants.async_server`):

1. :func:`check_inputs`, at the door, before any cluster is reached: ``X`` and ``y``, the learning rate, the
   number of steps, the starting weights, the model and the seed;
2. the driver checks its own options (aggregation, transport, staleness bound, ...);
3. :func:`prepare_run`: the number of nodes, the client, the shards placed on the workers, the batch size
   (bounded by the largest shard, so known only once the shards are placed) and the nodes' :class:`NodeConfig`.

The error messages name the parameter and its valid range (``tests/test_validation.py`` checks them).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import dask.array as da
import numpy as np
from distributed import Client

from ..cluster.client import check_client
from ..cluster.shards import Placement, place_shards
from ..core.checks import check_int, check_seed
from ..core.layout import Layout
from ..core.models import Model
from ..core.optim import check_common, check_xy
from .node import NodeConfig


@dataclass(frozen=True)
class Inputs:
    """The checked inputs of a run: data (numpy or dask), learning rate, steps, starting weights, model, seed."""

    X: Any
    y: Any
    lr: float
    n_steps: int
    w0: np.ndarray
    model: Model
    seed: int


@dataclass(frozen=True)
class RunSetup(Inputs):
    """A run ready to start: its checked inputs, the nodes, the client, the placed shards and the node config.

    ``place()`` places the shards again (the same layout, on the workers alive now): what a run calls after a
    lost worker (see :class:`~dml_lesson.ps.transport.Resilient`).
    """

    n_nodes: int
    backups: int
    client: Client
    layout: str | Layout
    placement: Placement
    batch_size: int | None
    config: NodeConfig

    @property
    def sizes(self) -> list[int]:
        """Rows of each node's shard, in node order."""
        return self.placement.sizes

    @property
    def batches(self) -> list[int]:
        """Rows of each node's mini-batch (its whole shard with no batch size, or a shard smaller than it)."""
        return [min(self.batch_size or s, s) for s in self.sizes]

    def place(self) -> Placement:
        """The shards placed again, as :func:`~dml_lesson.cluster.shards.place_shards` placed them at the start."""
        return place_shards(self.client, self.X, self.y, self.n_nodes, self.layout)


def check_inputs(X: Any, y: Any, lr: Any, n_steps: Any, w0: Any, model: Any, seed: Any, *,
                 steps_name: str = "n_steps", min_steps: int = 0) -> Inputs:
    """The checks every distributed run makes at the door, before it reaches for the cluster (notebooks 04-08).

    Parameters
    ----------
    X, y : numpy or dask arrays
        Features and targets (see :func:`~dml_lesson.core.optim.check_xy`); dask arrays stay on the cluster.
    lr, n_steps, w0, model
        As in :func:`~dml_lesson.core.optim.gradient_descent`.
    seed : int
        Seed of the mini-batches, >= 0.
    steps_name, min_steps : str, int
        What the caller calls its steps (``"n_updates"``, ``"n_rounds"``) and their least number: a
        count is checked under that name first, so its error names the caller's parameter.

    Returns
    -------
    Inputs
        The inputs as the run uses them (floats, ``w0`` a vector of zeros by default, a :class:`Model`).
    """
    X, y = check_xy(X, y, allow_dask=True)
    if steps_name != "n_steps" or min_steps:
        n_steps = check_int(steps_name, n_steps, low=min_steps)
    lr, n_steps, w, model = check_common(lr, n_steps, w0, X.shape[1], model)
    return Inputs(X, y, lr, n_steps, w, model, check_seed("seed", seed))


def prepare_run(inputs: Inputs, n_nodes: Any, client: Client | None, layout: str | Layout, batch_size: Any, *,
                backups: Any = 0, codec: Any = None, local_steps: int = 1) -> RunSetup:
    """Check the nodes, reach the cluster, place the shards, check the batch size, make the nodes' config.

    Used by :func:`~dml_lesson.ps.server.distributed_gd`, :func:`~dml_lesson.ps.server.distributed_sgd` (and so
    :func:`~dml_lesson.variants.local_sgd.local_sgd`), and :func:`~dml_lesson.variants.async_server.async_sgd`
    (notebooks 04-08).

    Parameters
    ----------
    inputs : Inputs
        From :func:`check_inputs`.
    n_nodes : int
        Nodes, from 1 to the number of blocks of ``X`` (its rows, for numpy).
    client : distributed.Client or None
        Checked by :func:`~dml_lesson.cluster.client.check_client` (None: the course's client).
    layout : str or Layout
        How the blocks are grouped into shards.
    batch_size : int or None
        Rows of a node's mini-batch, from 1 to the largest shard's rows; None: whole shards (gradient descent).
    backups : int
        Backup workers, from 0 to ``n_nodes - 1``.
    codec : optional
        The gradient codec the nodes use.
    local_steps : int
        Local SGD steps per server step (checked by the caller); above 1 the nodes' local steps use ``inputs.lr``.
    """
    X, y = inputs.X, inputs.y
    dask_input = isinstance(X, da.Array)
    n_blocks = X.numblocks[0] if dask_input else len(y)
    why = "the number of blocks of X" if dask_input else "the number of rows"
    n_nodes = check_int("n_nodes", n_nodes, low=1, high=n_blocks, why=why)
    backups = check_int("backups", backups, low=0, high=n_nodes - 1, why="n_nodes - 1: one node must answer")
    client = check_client(client)
    placement = place_shards(client, X, y, n_nodes, layout)
    if batch_size is not None:
        why = "the largest shard's rows"
        batch_size = check_int("batch_size", batch_size, low=1, high=max(placement.sizes), why=why)
    local = {} if local_steps == 1 else {"local_steps": local_steps, "local_lr": inputs.lr}
    config = NodeConfig(inputs.model, batch_size, inputs.seed, codec, uuid.uuid4().hex, **local)
    return RunSetup(X, y, inputs.lr, inputs.n_steps, inputs.w0, inputs.model, inputs.seed, n_nodes, backups, client,
                    layout, placement, batch_size, config)
