"""What one node of the parameter server computes in a step: the compute kernel, pure and fault-free.

A node holds one shard ``(X, y)``. Each step it receives ``w`` and returns
``(gradient sum, row count, loss sum)``: the gradient over its mini-batch (or its whole shard), and the loss
over its whole shard so that the server can record the full-data loss. Pure functions of the shard and
``(seed, node, step)``: the same inputs give the same reply on any worker (notebooks 04 and 05).

With ``local_steps = H > 1`` (local SGD, notebook 08) a server step is a *round*: the node takes ``H`` SGD steps
of its own from ``w`` and returns the sum of its ``H`` mini-batch gradient sums instead of one.

With ``with_loss=False`` (the overlapped server, ``overlap=True``, notebook 05) the step skips the loss pass over
the shard; :func:`node_loss` computes it apart, while the reply travels.
"""

from __future__ import annotations

import asyncio
import math
from typing import Any, NamedTuple

import numpy as np

from ..core.codecs import encode
from ..core.models import Model
from ..core.optim import minibatch_indices


class NodeConfig(NamedTuple):
    """Settings fixed for a whole run: the model, the per-node batch size (None: whole shard), the seed,
    the gradient codec (None: send the gradient as it is), a run id (keys a node's codec state), and for local
    SGD the local steps per round ``H`` (1: one gradient per step, the synchronous server) and their learning
    rate."""

    model: Model
    batch_size: int | None
    seed: int
    codec: Any = None
    run: str = ""
    local_steps: int = 1
    local_lr: float = 0.0


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
    with_loss: bool = True,
) -> NodeReply:
    """One node's work in one step: a pure function of its shard, the config, ``w`` and ``(node, step)``.

    Used by every synchronous run (notebooks 04-08, 10, 11). With ``config.local_steps = H > 1`` the step is a
    round of local SGD (:func:`local_round`); with ``H = 1`` it is one gradient, exactly as before local SGD
    joined the server. With a codec the gradient sum is sent encoded; ``state`` is the node's memory between
    steps (the error feedback residual): the actor's own dict, or a per-run dict kept on the worker for task
    steps. ``with_loss=False``: the reply's loss sum is NaN unless it came free with the gradient (whole shard).
    """
    X, y = aligned(shard)
    model = config.model
    with np.errstate(all="ignore"):
        if not need_grad:
            reply = NodeReply(None, 0, model.loss_sum(w, X, y))
        elif config.local_steps > 1:
            reply = local_round(X, y, config, node, w, step, with_loss)
        elif config.batch_size is None or config.batch_size >= len(y):
            loss_sum, grad_sum = model.sums(w, X, y)  # the loss comes free with the whole shard's gradient
            reply = NodeReply(grad_sum, len(y), loss_sum)
        else:
            idx = minibatch_indices(len(y), config.batch_size, config.seed, node, step)
            grad_sum = model.sums(w, X[idx], y[idx])[1]
            reply = NodeReply(grad_sum, len(idx), model.loss_sum(w, X, y) if with_loss else math.nan)
    if config.codec is not None and reply.grad_sum is not None:
        if state is None:
            state = _task_state(config.run, node)
        reply = reply._replace(grad_sum=encode(config.codec, reply.grad_sum, config.seed, node, step, state))
    return reply


def local_round(X: np.ndarray, y: np.ndarray, config: NodeConfig, node: int, w: np.ndarray, rnd: int,
                with_loss: bool = True) -> NodeReply:
    """Round ``rnd`` of local SGD on one node (notebook 08): ``H = config.local_steps`` SGD steps from ``w``.

    Local step ``h`` uses the mini-batch of step ``rnd * H + h`` (seed ``(seed, node, rnd * H + h)``) and the
    learning rate ``config.local_lr``. Returns ``(G, b, loss sum)``: the sum of the ``H`` mini-batch gradient
    sums, the batch rows, and the shard's loss sum at ``w`` (the server records the full-data loss before the
    round; NaN with ``with_loss=False``). The node's local model is ``w - local_lr * G / b``: the server rebuilds
    it from ``G`` and ``b``.
    """
    model, n_local, lr = config.model, config.local_steps, config.local_lr
    loss_sum = model.loss_sum(w, X, y) if with_loss else math.nan
    local, total, count = w, None, 0
    for h in range(n_local):
        if config.batch_size is None:
            idx: Any = slice(None)
        else:
            idx = minibatch_indices(len(y), config.batch_size, config.seed, node, rnd * n_local + h)
        grad_sum = model.sums(local, X[idx], y[idx])[1]
        count = len(y) if isinstance(idx, slice) else len(idx)
        local = local - lr * (grad_sum / count)
        total = grad_sum if total is None else total + grad_sum
    return NodeReply(total, count, loss_sum)


def node_loss(shard: tuple[np.ndarray, np.ndarray], config: NodeConfig, w: np.ndarray) -> NodeReply:
    """The loss pass alone: ``(None, 0, loss sum of the shard at w)``, the number :func:`node_step` returns with
    ``with_loss=True``. The overlapped server's nodes run it in a thread while their reply travels (notebook 05).
    """
    X, y = aligned(shard)
    with np.errstate(all="ignore"):
        return NodeReply(None, 0, config.model.loss_sum(w, X, y))


class LossPass:
    """A node's loss pass run beside the messages (the overlapped server, ``overlap=True``, notebook 05).

    :meth:`start` computes the shard's loss at ``w`` in a thread of the worker, or keeps ``free``, a loss the
    gradient pass gave already (whole shards); :meth:`take` waits for it (NaN when nothing was started). Call both
    on the worker's event loop (the actor's coroutines).
    """

    def __init__(self) -> None:
        self.pending: asyncio.Future | None = None

    def start(self, shard: tuple[np.ndarray, np.ndarray], config: NodeConfig, w: np.ndarray,
              free: float = math.nan) -> None:
        loop = asyncio.get_running_loop()
        if math.isnan(free):
            self.pending = loop.run_in_executor(None, node_loss, shard, config, w)
        else:
            self.pending = loop.create_future()
            self.pending.set_result(NodeReply(None, 0, free))

    async def take(self) -> float:
        return math.nan if self.pending is None else (await self.pending).loss_sum


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
