"""What one node of the parameter server computes in a step, and the actor that keeps its shard in memory.

A node holds one shard ``(X, y)``. Each step it receives ``w`` and returns
``(gradient sum, row count, loss sum)``: the gradient over its mini-batch (or its whole shard), and the loss
over its whole shard so that the server can record the full-data loss. Pure functions of the shard and
``(seed, node, step)``: the same inputs give the same reply on any worker (notebooks 04 and 05).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any, NamedTuple

import numpy as np

from .codecs import encode
from .faults import slowed_down, straggle
from .models import Model
from .optim import minibatch_indices

INLINE_CELLS = 1 << 16
"""Shards with at most this many entries in ``X`` are computed on the worker's event loop (tens of
microseconds); larger ones in a thread."""


class NodeConfig(NamedTuple):
    """Settings fixed for a whole run: the model, the per-node batch size (None: whole shard), the seed,
    the gradient codec (None: send the gradient as it is) and a run id (keys a node's codec state)."""

    model: Model
    batch_size: int | None
    seed: int
    codec: Any = None
    run: str = ""


class NodeReply(NamedTuple):
    """A node's answer: the sum of per-row gradients (None when not asked), rows used, and the loss sum."""

    grad_sum: np.ndarray | None
    count: int
    loss_sum: float


def node_step(
    shard: tuple[np.ndarray, np.ndarray],
    config: NodeConfig,
    node: int,
    w: np.ndarray,
    step: int,
    need_grad: bool = True,
    state: dict | None = None,
) -> NodeReply:
    """One node's work in one step: a pure function of its shard, the config, ``w`` and ``(node, step)``.

    With a codec the gradient sum is sent encoded; ``state`` is the node's memory between steps (the error
    feedback residual): the actor's own dict, or a per-run dict kept on the worker for task steps.
    """
    started = time.perf_counter()
    X, y = aligned(shard)
    model = config.model
    with np.errstate(all="ignore"):
        if not need_grad:
            reply = NodeReply(None, 0, model.loss_sum(w, X, y))
        elif config.batch_size is None or config.batch_size >= len(y):
            loss_sum, grad_sum = model.sums(w, X, y)
            reply = NodeReply(grad_sum, len(y), loss_sum)
        else:
            idx = minibatch_indices(len(y), config.batch_size, config.seed, node, step)
            reply = NodeReply(model.sums(w, X[idx], y[idx])[1], len(idx), model.loss_sum(w, X, y))
    if config.codec is not None and reply.grad_sum is not None:
        if state is None:
            state = _task_state(config.run, node)
        reply = reply._replace(grad_sum=encode(config.codec, reply.grad_sum, config.seed, node, step, state))
    straggle(started)  # a worker slowed down on purpose (notebook 07) sleeps here
    return reply


_TASK_STATES: dict[tuple[str, int], dict] = {}


def _task_state(run: str, node: int) -> dict:
    """Codec state of a node whose steps are tasks: kept in the worker process, for the last few runs."""
    if (run, node) not in _TASK_STATES and len(_TASK_STATES) > 256:
        _TASK_STATES.clear()
    return _TASK_STATES.setdefault((run, node), {})


def aligned(shard: tuple[np.ndarray, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """The shard with its arrays in aligned memory.

    A shard that travelled between workers can arrive in an unaligned buffer; numpy then skips BLAS, which
    is about 8 times slower and adds up in another order (so the last bits of a gradient would depend on
    where the shard has been). Aligned arrays pass through without a copy.
    """
    X, y = shard
    if X.flags.aligned and y.flags.aligned:
        return shard
    return np.require(X, requirements="A"), np.require(y, requirements="A")


class ActorStateLost(RuntimeError):
    """The actor was recreated by Dask after its worker died and has lost its run settings."""


class ShardActor:
    """A Dask actor holding one node's shard: each step is a direct call, no scheduler round trip."""

    def __init__(self, shard: tuple[np.ndarray, np.ndarray], node: int) -> None:
        self.shard, self.node = aligned(shard), node
        self.config: NodeConfig | None = None
        self.state: dict = {}

    def configure(self, config: NodeConfig) -> None:
        """Set the run's settings once, so that each step only carries ``w``; forget the last run's state."""
        self.config, self.state = config, {}

    async def step(self, w: np.ndarray, step: int, need_grad: bool = True) -> NodeReply:
        """Run :func:`node_step` on the shard held in memory.

        A coroutine, so Dask runs it on the worker's event loop: for a small shard that saves the hop to the
        actor thread and back (about a tenth of a millisecond per call, measured). A large shard, or a worker
        slowed down on purpose, computes in a thread instead, so that the worker keeps answering meanwhile.
        """
        if self.config is None:
            raise ActorStateLost("this actor was rebuilt after its worker died: configure it again")
        args = (self.shard, self.config, self.node, w, step, need_grad, self.state)
        if self.shard[0].size <= INLINE_CELLS and not slowed_down():
            return node_step(*args)
        return await asyncio.get_running_loop().run_in_executor(None, node_step, *args)
