"""The asynchronous parameter server, and its stale-synchronous middle ground (notebook 08).

The synchronous server of notebooks 04-07 waits at a barrier for every node each step. Here there is no barrier. A
Dask actor, :class:`~dml_lesson.variants.async_actor.AsyncServer`, holds ``w`` and a **version** (how many times
``w`` was updated). Each node runs its own loop on its worker: compute a mini-batch gradient of its shard at the
``w`` it has, push it, and get the newest ``w`` back in the same call. The loops of one worker's nodes run in one
long-running task, a coroutine on the worker's event loop, and talk to the actor directly (no scheduler round trip,
no thread hand-off): that is what makes a thousand updates per second possible on two workers.

While a node computes, other nodes' gradients move ``w`` on: its gradient arrives **stale**. The server
records, for every gradient, its staleness ``tau``: the gradients applied to ``w`` after the version the gradient
was computed at and before the update that applies it. One unit in both modes below: gradients, not updates.

``staleness_bound=None`` (asynchronous SGD): each gradient is applied on arrival, as its own update
``w <- w - lr * (mean gradient of the node's batch)``, so ``n_updates`` counts gradients and ``tau`` is the server
version when applied minus the version read. Each update moves ``w`` by one node's batch mean at ``lr``, where a
synchronous step moves it by the mean of ``n_nodes`` at ``lr``: ``lr / n_nodes`` gives the same step per gradient.

``staleness_bound=s`` (stale-synchronous parallel, SSP): a node's ``t``-th gradient belongs to clock ``t``.
The server applies a clock once every node has pushed its gradient for it, all together and in node order,
exactly as the synchronous server combines a step (weighted mean); that is one update. A node may start clock
``t`` only once clocks ``0 ... t - s - 1`` are applied (version ``>= t - s``), and it then reads the newest ``w``:
fast nodes run up to ``s`` clocks ahead. A gradient of clock ``t`` computed at version ``v`` missed clocks
``v ... t - 1``, ``t - v <= s`` clocks of ``n_nodes`` gradients each: ``tau = n_nodes * (t - v)``, a multiple of
``n_nodes`` up to ``n_nodes * s`` (the gradients of its own clock go in with it, in the same update, so they do
not count). With ``s = 0`` nobody runs
ahead: it *is* the synchronous server, bit for bit (``distributed_sgd`` with the same seed gives the same weights),
and every ``tau`` is 0.

SSP as Ho et al. (NIPS 2013) define it gives the same guarantee (a worker at clock ``t`` sees every update of
clocks before ``t - s``) but applies each update as it arrives. With ``s = 0`` that is still bulk-synchronous:
every gradient of clock ``t`` is computed at a ``w`` holding all earlier clocks, and applying them one at a time
only reorders the additions. The differences: here a clock is applied atomically, so nobody reads a partly
applied clock, whereas Ho's workers may read a fresher, partly updated ``w`` within the bound; and staleness here
comes in whole clocks.

Mini-batches are drawn from ``(seed, node, clock)`` as in :func:`~dml_lesson.core.optim.minibatch_indices`; which
``w`` each gradient meets depends on timing, so asynchronous runs are not repeatable: tests check properties.
The full-data loss of every recorded ``w`` is computed by the nodes after the run (one call per node), so the
loop itself only moves ``w`` and gradients.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np
from distributed import Client, wait

from ..cluster.client import restart_advice
from ..cluster.shards import Placement
from ..core.checks import check_int
from ..core.layout import Layout
from ..core.models import Model
from ..core.result import Recorder, TrainingResult, ordered_sum
from ..core.settings import ASYNC_POLL_SECONDS, CALL_TIMEOUT, RUN_TIMEOUT, STOP_TIMEOUT
from ..ps.comm import serialized_nbytes
from ..ps.node import NodeConfig, aligned
from ..ps.setup import check_inputs, prepare_run
from .async_actor import AsyncServer, worker_loop


@dataclass(frozen=True, repr=False)
class AsyncResult(TrainingResult):
    """A :class:`~dml_lesson.core.result.TrainingResult` with one record per gradient the server received.

    ``weights[k]`` is ``w`` after ``k`` updates and ``losses[k]`` its full-data loss; ``step_times[k]`` is the
    time between updates ``k`` and ``k + 1`` (server clock). The per-gradient arrays are in arrival order.

    Attributes
    ----------
    nodes, clocks : numpy int arrays
        Which node sent each gradient, and its clock (the node's own count of gradients, from 0).
    versions_read : numpy int array
        The version of ``w`` the gradient was computed at.
    staleness : numpy int array
        ``tau``: gradients applied to ``w`` after ``versions_read`` and before the update that applied this one
        (no bound: the update's index minus ``versions_read``; with a bound: ``n_nodes * (clocks - versions_read)``).
    arrival_times : numpy float array
        Seconds from the start (the moment all nodes were ready) to the gradient's arrival.
    """

    nodes: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=np.int64))
    clocks: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=np.int64))
    versions_read: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=np.int64))
    staleness: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=np.int64))
    arrival_times: np.ndarray = field(default_factory=lambda: np.empty(0))

    @property
    def updates_per_second(self) -> float:
        """Server updates per second of wall time, from the start to the last update."""
        total = float(np.sum(self.step_times))
        return self.n_steps / total if total > 0 else float("nan")

    @property
    def messages(self) -> np.ndarray:
        """Messages (pushes and pulls) exchanged by the time of each entry of ``losses``."""
        return np.arange(len(self.losses)) * self.params["messages_per_step"]


def async_sgd(
    X: Any,
    y: Any,
    n_nodes: int = 4,
    lr: float = 0.05,
    batch_size: int = 32,
    n_updates: int = 400,
    staleness_bound: int | None = None,
    seed: int = 0,
    client: Client | None = None,
    *,
    w0: Any = None,
    model: str | Model = "linear",
    layout: str | Layout = "contiguous",
) -> AsyncResult:
    """Asynchronous (or stale-synchronous) SGD with a parameter server on the cluster (notebook 08).

    Parameters
    ----------
    X, y : numpy or dask arrays
        Features (intercept column included) and targets, as for :func:`~dml_lesson.ps.server.distributed_sgd`.
    n_nodes : int
        Nodes, from 1 to the number of blocks of ``X`` (its rows, for numpy); node ``i`` runs on worker
        ``i % n_workers``.
    lr : float
        Learning rate, > 0.
    batch_size : int
        Rows of each node's mini-batch (a smaller shard is used whole).
    n_updates : int
        Updates of ``w`` to make, >= 1: gradients applied (no bound) or clocks completed (with a bound).
    staleness_bound : None or int
        None: asynchronous SGD, every gradient applied on arrival. ``s >= 0``: stale-synchronous, no node more
        than ``s`` clocks ahead, every staleness at most ``n_nodes * s`` gradients; 0 is the synchronous server.
    seed : int
        Seed of the mini-batches, keyed ``(seed, node, clock)``.
    client : distributed.Client, optional
        Defaults to :func:`~dml_lesson.cluster.client.get_client`.
    w0, model, layout
        As in :func:`~dml_lesson.ps.server.distributed_sgd`.

    Returns
    -------
    AsyncResult
        Weights and losses after every update, and one record per gradient (node, clock, staleness, time).
    """
    inputs = check_inputs(X, y, lr, n_updates, w0, model, seed, steps_name="n_updates", min_steps=1)
    if staleness_bound is not None:
        staleness_bound = check_int("staleness_bound", staleness_bound, low=0, why="or None for no bound")
    run = prepare_run(inputs, n_nodes, client, layout, batch_size)
    client, placement, batch_size, w = run.client, run.placement, run.batch_size, run.w0
    history = run_server(client, placement, run.config, w, run.lr, run.n_steps, staleness_bound)
    losses = node_losses(client, placement, run.model, history["weights"])
    free = staleness_bound is None
    w_msg, g_msg = serialized_nbytes((w.tolist(), 0)), serialized_nbytes((0, 0, 0, w.tolist(), batch_size))
    per_update = 1 if free else run.n_nodes
    params = {"lr": run.lr, "n_updates": run.n_steps, "n_nodes": run.n_nodes, "batch_size": batch_size,
              "seed": run.seed, "staleness_bound": staleness_bound, "shard_sizes": run.sizes,
              "workers": list(placement.workers), "messages_per_step": 2 * per_update,
              "gradients": len(history["nodes"])}
    rows = int(round(np.mean(run.batches))) if free else sum(run.batches)
    method = "async_sgd" if free else "ssp_sgd"
    return _result(method, history, losses, rows, len(run.y), params, per_update * w_msg, per_update * g_msg)


def run_server(client: Client, placement: Placement, config: NodeConfig, w0: np.ndarray, lr: float,
               n_updates: int, staleness_bound: int | None) -> dict[str, np.ndarray]:
    """Start the server actor and one loop per node, wait for ``n_updates`` updates, stop everything.

    The loops always stop, also on an error or a KeyboardInterrupt in the driver: the server is told to stop,
    every loop ends at its next call, and the actor is released. Returns the server's history.
    """
    workers = list(placement.workers)
    server_future = client.submit(AsyncServer, w0, lr, placement.n_nodes, n_updates, staleness_bound,
                                  workers=[workers[0]], allow_other_workers=True, actor=True)
    server = server_future.result(timeout=CALL_TIMEOUT)
    loops = []
    for i, addr in enumerate(dict.fromkeys(workers)):  # one task per worker, running that worker's nodes
        nodes = [n for n, a in enumerate(workers) if a == addr]
        shards = [placement.futures[n] for n in nodes]
        loops.append(client.submit(worker_loop, server, shards, nodes, config, key=f"async-nodes-{i}-{config.run}",
                                   workers=[addr], allow_other_workers=True, pure=False))
    try:
        done, deadline = server.finished(RUN_TIMEOUT), time.monotonic() + RUN_TIMEOUT
        while not done.done():
            for loop in loops:
                if loop.status == "error":
                    loop.result()  # a node's error (e.g. a timeout) is the run's error
            if time.monotonic() > deadline:
                raise TimeoutError(f"the asynchronous run did not finish within {RUN_TIMEOUT:.0f} s: the cluster "
                                   f"may be overloaded; {restart_advice()}")
            time.sleep(ASYNC_POLL_SECONDS)
        done.result(timeout=CALL_TIMEOUT)
        history = server.history().result(timeout=CALL_TIMEOUT)
    finally:
        try:
            server.stop().result(timeout=STOP_TIMEOUT)
        finally:
            wait(loops, timeout=STOP_TIMEOUT)
            for loop in loops:
                loop.release()
            # The actor handle keeps the actor's key wanted (its own future, held by pending calls in reference
            # cycles that only the garbage collector breaks): cancelling the key tells the scheduler to forget it
            # now, so the actor leaves its worker at the end of the run.
            client.cancel([server_future])
            server_future.release()
    for loop in loops:  # an error in a loop (e.g. a timeout) is the run's error
        if loop.status == "error":
            loop.result()
    return history


def node_losses(client: Client, placement: Placement, model: Model, weights: np.ndarray) -> np.ndarray:
    """Full-data loss of each row of ``weights``: each node sums its shard's losses, added in node order."""
    futures = [client.submit(_loss_sums, shard, model, weights, workers=[addr], allow_other_workers=True,
                             pure=False)
               for shard, addr in zip(placement.futures, placement.workers)]
    try:
        sums = client.gather(futures, errors="raise") if not wait(futures, timeout=RUN_TIMEOUT).not_done else None
    finally:
        for f in futures:
            f.release()
    if sums is None:
        raise TimeoutError(f"the nodes did not compute the losses within {RUN_TIMEOUT:.0f} s")
    return ordered_sum(sums) / placement.n_rows


def _loss_sums(shard: tuple[np.ndarray, np.ndarray], model: Model, weights: np.ndarray) -> np.ndarray:
    """The shard's loss sum for each row of ``weights`` (the same sums a synchronous node returns)."""
    X, y = aligned(shard)
    with np.errstate(all="ignore"):
        return np.array([model.loss_sum(w, X, y) for w in weights])


def _result(method: str, history: dict[str, np.ndarray], losses: np.ndarray, rows: int, n_rows: int,
            params: dict, sent: int, received: int) -> AsyncResult:
    """Build the record: losses decide divergence (as everywhere in the course), the server's clock the times."""
    rec = Recorder(method, history["weights"].shape[1], rows, n_rows, params)
    for w, loss in zip(history["weights"], losses):
        if not rec.record(w, loss):
            break
    base = rec.result()
    k = base.n_steps
    times = np.concatenate([[0.0], history["update_times"]])[: k + 1]
    keep = history["staleness"] >= 0
    extra = {name: history[name][keep] for name in ("nodes", "clocks", "versions_read", "staleness", "arrival_times")}
    values = {f.name: getattr(base, f.name) for f in fields(TrainingResult)}
    values.update(step_times=np.diff(times), bytes_sent=np.full(k, sent, dtype=np.int64),
                  bytes_received=np.full(k, received, dtype=np.int64))
    return AsyncResult(**values, **extra)

