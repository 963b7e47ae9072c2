"""The synchronous parameter server: distributed gradient descent and distributed SGD (notebooks 04, 05).

Each step: the server sends ``w`` to every node (pull), each node computes the gradient sum over its shard
or its mini-batch (local gradient) and sends it back with its row count (push), the server combines the
replies in node order (average) and updates ``w``. ``aggregate="mean"`` divides the summed gradients by the
total row count: the gradient of the whole dataset, exactly. ``aggregate="sum"`` adds the nodes' mean
gradients, as the source's formula 3.3 does: with ``N`` equal shards that is ``N`` times the step, and
training diverges as nodes are added.

The same loop runs local SGD (notebook 08): with ``local_steps = H > 1`` each node takes ``H`` SGD steps of its
own per server step (a *round*, see :func:`~dml_lesson.ps.node.local_round`) and ``aggregate="shard"`` weights
the nodes' models by their shard sizes (FedAvg). Every run gets its setup from :mod:`dml_lesson.ps.setup`, its
nodes from :mod:`dml_lesson.ps.transport` (with fault recovery) or :mod:`dml_lesson.ps.ring`.

With ``overlap=True`` (notebook 05) the nodes compute the full-data loss of ``w`` in a thread while their reply
travels and the server updates: the loss of step ``t`` arrives with the replies of step ``t + 1``, and the loop
records it then (:class:`_Losses`). Weights and losses are those of ``overlap=False``, bit for bit.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from distributed import Client

from ..core.checks import check_choice, check_int
from ..core.codecs import decoded
from ..core.layout import Layout
from ..core.models import Model
from ..core.optim import Schedule, make_schedule
from ..core.result import Recorder, TrainingResult, ordered_sum
from ..core.settings import AGGREGATES
from .node import NodeReply
from .ring import TOPOLOGIES, RingAllReduce, check_ring_options
from .setup import check_inputs, prepare_run
from .transport import TRANSPORTS, Resilient


def distributed_gd(
    X: Any,
    y: Any,
    n_nodes: int = 4,
    lr: float = 0.1,
    n_steps: int = 100,
    aggregate: str = "mean",
    client: Client | None = None,
    *,
    w0: Any = None,
    model: str | Model = "linear",
    layout: str | Layout = "contiguous",
    transport: str = "actors",
    on_step: Callable[[int], None] | None = None,
    codec: Any = None,
    backups: int = 0,
    topology: str = "server",
) -> TrainingResult:
    """Full-batch gradient descent computed by ``n_nodes`` nodes of a parameter server (notebook 04).

    Parameters
    ----------
    X, y : numpy or dask arrays
        Features (intercept column included) and targets. Dask arrays stay on the cluster.
    n_nodes : int
        Nodes, from 1 to the number of blocks of ``X`` (its rows, for numpy); may exceed the workers.
    lr, n_steps, w0, model
        As in :func:`~dml_lesson.core.optim.gradient_descent`.
    aggregate : ``"mean"`` or ``"sum"``
        Weighted mean of the nodes' gradients (correct), or the source's sum of node means.
    client : distributed.Client, optional
        Defaults to :func:`~dml_lesson.cluster.client.get_client`.
    layout : str or Layout
        How blocks are grouped into shards (see :mod:`dml_lesson.core.layout`).
    transport : ``"actors"`` or ``"tasks"``
        How the server reaches its nodes (see :mod:`dml_lesson.ps.transport`); results are identical.
    on_step : callable, optional
        Called with the step number before each step (notebook 07 kills a worker with
        :func:`~dml_lesson.cluster.faults.kill_at`). A lost worker does not stop the run: its shards are rebuilt
        from their lineage and the step is repeated, with the same result.
    codec : optional
        A gradient codec from :mod:`dml_lesson.core.codecs` (e.g. ``TopK(0.1)``): nodes send encoded gradients,
        the server decodes them before averaging (notebook 06). Error-feedback state lives on the nodes and
        starts afresh after a lost worker.
    backups : int
        Backup workers (notebook 07): each step uses the first ``n_nodes - backups`` nodes to answer and
        drops the rest, so a straggler does not hold everybody up; a node still busy with an old step is
        not asked again until it is done. The mean is taken over the nodes that answered, and so is the
        recorded loss (an estimate); the last loss waits for every node. Runs with backups depend on timing.
    topology : ``"server"`` or ``"ring"``
        ``"server"``: the nodes send their gradients to the server (this process), which combines them.
        ``"ring"``: the nodes sum them among themselves with a ring all-reduce, as Dask tasks passing pieces
        from worker to worker (:mod:`dml_lesson.ps.ring`, notebook 12); the result equals the server's to
        rounding (the additions happen in another order). The ring always uses tasks (``transport`` is not
        used), needs every node (``backups=0``) and sends plain gradients (``codec=None``).
    """
    return _train("distributed_gd", **locals(), batch_size=None, seed=0, schedule="constant")


def distributed_sgd(
    X: Any,
    y: Any,
    n_nodes: int = 4,
    lr: float = 0.05,
    batch_size: int = 32,
    n_steps: int = 500,
    seed: int = 0,
    client: Client | None = None,
    *,
    aggregate: str = "mean",
    schedule: Schedule = "constant",
    w0: Any = None,
    model: str | Model = "linear",
    layout: str | Layout = "contiguous",
    transport: str = "actors",
    on_step: Callable[[int], None] | None = None,
    codec: Any = None,
    backups: int = 0,
    topology: str = "server",
    local_steps: int = 1,
    overlap: bool = False,
) -> TrainingResult:
    """Distributed mini-batch SGD: each node samples its own mini-batch of its shard (notebooks 05 and 08).

    ``batch_size`` is per node: one step uses ``n_nodes * batch_size`` rows (the global batch). Node ``i``
    draws its batch at step ``t`` from its shard with the seed ``(seed, i, t)``, as
    :func:`~dml_lesson.core.optim.sgd` does on the whole dataset, so one node reproduces ``sgd`` exactly. A
    shard smaller than ``batch_size`` is used whole; a ``batch_size`` at least every shard's size gives
    :func:`distributed_gd`. The other parameters are those of :func:`distributed_gd` and
    :func:`~dml_lesson.core.optim.sgd`, and:

    aggregate : ``"mean"``, ``"sum"`` or ``"shard"``
        ``"shard"`` weights node ``i``'s mean gradient by its share of the rows, ``n_i / n`` (FedAvg's weights,
        for local SGD); it needs ``topology="server"``.
    local_steps : int
        ``H >= 1``: local SGD (notebook 08, through :func:`~dml_lesson.variants.local_sgd.local_sgd`). Each
        step is a round: every node takes ``H`` SGD steps of its own from ``w`` with learning rate ``lr``
        (local step ``h`` of round ``t`` draws the batch of step ``t * H + h``) and sends the sum ``G_i`` of its
        ``H`` gradient sums; the server steps ``w - lr * combine(...)``, which with ``"shard"`` (or ``"mean"``
        and equal batches) is the average of the nodes' local models. ``rows_per_step`` counts all ``H``
        local steps. ``H = 1`` (the default) is distributed SGD, unchanged. ``H > 1`` needs
        ``schedule="constant"``.
    overlap : bool
        Overlap the loss pass with communication (notebook 05). Each node replies with its gradient at ``w_t`` as
        soon as it has it, and computes the full-data loss at ``w_t`` in a thread while the reply travels and the
        server updates; that loss comes with the next reply (the last one is fetched at the end) and is recorded
        as step ``t``'s. Weights and losses equal ``overlap=False``'s bit for bit; a diverging run is stopped one
        round later, at the same recorded step; after a lost worker the new nodes recompute the loss owed. Needs
        ``transport="actors"``, ``topology="server"`` and ``backups=0``.
    """
    return _train("distributed_sgd", **locals())


def _train(method, X, y, n_nodes, lr, n_steps, aggregate, client, w0, model, layout, transport, on_step, codec,
           backups, batch_size, seed, schedule, topology="server", local_steps=1, overlap=False) -> TrainingResult:
    inputs = check_inputs(X, y, lr, n_steps, w0, model, seed)
    aggregate = check_choice("aggregate", aggregate, AGGREGATES)
    transport = check_choice("transport", transport, TRANSPORTS)
    topology = check_ring_options(check_choice("topology", topology, TOPOLOGIES), codec, backups)
    overlap = check_overlap(overlap, transport, topology, backups)
    if aggregate == "shard" and topology == "ring":
        raise ValueError("aggregate must be 'mean' or 'sum' with topology='ring' (the ring adds the nodes' vectors "
                         "as they are), got 'shard'")
    factor = make_schedule(schedule)
    local_steps = check_int("local_steps", local_steps, low=1)
    if local_steps > 1 and not (isinstance(schedule, str) and schedule == "constant"):
        raise ValueError(f"schedule must be 'constant' with local_steps > 1 (the nodes' local steps use lr as it "
                         f"is), got {schedule!r}")
    run = prepare_run(inputs, n_nodes, client, layout, batch_size, backups=backups, codec=codec,
                      local_steps=local_steps)
    lr, n_steps, seed, n_nodes, backups, w = run.lr, run.n_steps, run.seed, run.n_nodes, run.backups, run.w0
    nodes = (Resilient(run.client, run.place, run.config, transport, overlap) if topology == "server"
             else RingAllReduce(run.client, run.place, run.config, aggregate))
    sizes = run.sizes if topology == "server" else [sum(run.sizes)]  # the ring replies with totals
    params = {"lr": lr, "n_steps": n_steps, "n_nodes": n_nodes, "aggregate": aggregate,
              "batch_size": run.batch_size, "seed": seed, "transport": transport, "codec": codec, "backups": backups,
              "shard_sizes": run.sizes, "workers": list(run.placement.workers), "topology": topology,
              "local_steps": local_steps, "overlap": overlap}
    rec = Recorder(method, len(w), local_steps * sum(run.batches), len(run.y), params)
    losses = _Losses(rec, sizes, nodes, overlap, last_step=n_steps)
    for step in range(n_steps + 1):  # the server loop: pull, local gradients, push, combine, update
        if on_step is not None:
            on_step(step)
        need_grad = step < n_steps
        replies, sent, received = nodes.round(w, step, need_grad, n_nodes - backups if need_grad else None)
        if not losses.record(w, step, replies) or not need_grad:
            break
        with np.errstate(all="ignore"):
            w = w - lr * factor(step) * combine(decoded(codec, replies, len(w), seed, step), aggregate, run.sizes)
        rec.step_done(sent, received)
    rec.params["recoveries"] = nodes.recoveries
    return rec.result()


def combine(replies: list[NodeReply | None], aggregate: str = "mean", sizes: list[int] | None = None) -> np.ndarray:
    """The server's gradient from the nodes' replies, added in node order (so runs repeat bit for bit).

    Used by every synchronous run (notebooks 04-08) and by the stale-synchronous server (notebook 08).
    ``"mean"``: sum of gradient sums / total rows (the full-data gradient). ``"sum"``: sum of each node's
    mean gradient (the source's formula 3.3). ``"shard"``: sum of each node's mean gradient weighted by its
    share of the rows, ``sizes[i] / sum(sizes)`` (local SGD's FedAvg; ``sizes`` in node order, required).
    Nodes that did not answer (``None``) are left out (with ``"shard"``, the shares are of the rows of the nodes
    that answered).
    """
    if aggregate == "shard":
        if sizes is None:
            raise ValueError("aggregate='shard' weights the nodes by their shard sizes: pass sizes")
        answered = [(r, n) for r, n in zip(replies, sizes) if r is not None]
        total = sum(n for _, n in answered)
        return ordered_sum((n / total) * (r.grad_sum / r.count) for r, n in answered)
    replies = [r for r in replies if r is not None]
    if aggregate == "mean":
        return ordered_sum(r.grad_sum for r in replies) / sum(r.count for r in replies)
    return ordered_sum(r.grad_sum / r.count for r in replies)


def check_overlap(overlap: Any, transport: str, topology: str, backups: Any) -> bool:
    """``overlap`` as a bool, or a ``ValueError`` naming what it cannot be combined with (notebook 05)."""
    if not isinstance(overlap, (bool, np.bool_)):
        raise ValueError(f"overlap must be True or False, got {overlap!r}")
    if overlap and transport != "actors":
        raise ValueError(f"overlap=True needs transport='actors' (an actor keeps the loss it computes between "
                         f"steps; a task does not), got transport={transport!r}")
    if overlap and topology != "server":
        raise ValueError(f"overlap=True needs topology='server' (the ring's tasks keep nothing between steps), "
                         f"got topology={topology!r}")
    if overlap and backups != 0:
        raise ValueError(f"overlap=True needs backups=0 (a node left out of a step would still owe its loss), "
                         f"got backups={backups!r}")
    return bool(overlap)


class _Losses:
    """Records each step's ``w`` with its full-data loss, from the nodes' loss sums: at once, or overlapped.

    Overlapped, the replies of step ``t`` carry the loss of ``w_(t-1)``: ``w_(t-1)`` is recorded then (a diverging
    run stops there, with the step the recorder counts), and after the last step the nodes' last loss is fetched.
    """

    def __init__(self, rec: Recorder, sizes: list[int], nodes: Any, overlap: bool, last_step: int) -> None:
        self.rec, self.sizes, self.nodes, self.overlap, self.last_step = rec, sizes, nodes, overlap, last_step
        self.waiting: np.ndarray | None = None  # overlapped: the w whose loss the next replies carry

    def record(self, w: np.ndarray, step: int, replies: list[NodeReply | None]) -> bool:
        """Record what the replies of ``step`` (sent ``w``) complete; False: stop, the run has diverged."""
        if not self.overlap:
            return self.rec.record(w, _loss(replies, self.sizes))
        if self.waiting is not None and not self.rec.record(self.waiting, _loss(replies, self.sizes)):
            return False
        self.waiting = w
        return step < self.last_step or self.rec.record(w, _loss(self.nodes.pending_losses(step), self.sizes))


def _loss(replies: list[NodeReply | None], sizes: list[int]) -> float:
    """Full-data loss from the nodes' loss sums (over the nodes that answered, with backup workers)."""
    answered = [i for i, r in enumerate(replies) if r is not None]
    return ordered_sum(replies[i].loss_sum for i in answered) / sum(sizes[i] for i in answered)
