"""What one node of the parameter server computes in a step: the compute kernel, pure and fault-free.

A node holds one shard ``(X, y)``. Each step it receives ``w`` and returns
``(gradient sum, row count, loss sum)``: the gradient over its mini-batch (or its whole shard), and the loss
over its whole shard so that the server can record the full-data loss. Pure functions of the shard and
``(seed, node, step)``: the same inputs give the same reply on any worker (notebooks 04 and 05).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

from ..core.codecs import encode
from ..core.models import Model
from ..core.optim import minibatch_indices


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
