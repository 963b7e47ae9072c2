"""The worker side of the asynchronous server (notebook 08): the server actor and the nodes' loops.

:class:`AsyncServer` is a Dask actor holding ``w``, its version and the record of every gradient; each worker runs
its nodes in one long-running task, :func:`worker_loop`, a coroutine on the worker's event loop that talks to the
actor directly. :mod:`dml_lesson.variants.async_server` starts both, waits, and builds the result; its docstring
explains the asynchronous and stale-synchronous rules these implement.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import numpy as np

from ..cluster.faults import held, slowdown, waiting_on_hold
from ..core.optim import minibatch_indices
from ..core.result import DIVERGENCE_FACTOR
from ..core.settings import CALL_TIMEOUT, HOLD_POLL_SECONDS
from ..ps.node import NodeConfig, NodeReply, aligned
from ..ps.server import combine


async def worker_loop(server: Any, shards: list[tuple[np.ndarray, np.ndarray]], nodes: list[int],
                      config: NodeConfig) -> list[int]:
    """The task that runs every node of one worker: a coroutine, so it runs on the worker's event loop.

    Each node is an asyncio task. Its calls to the server actor are awaited on the same loop as the worker's
    own messages: no thread hand-offs, which would cost more than the arithmetic of a small mini-batch.
    Returns the number of gradients each node pushed.
    """
    return list(await asyncio.gather(*(node_loop(server, shard, config, node) for shard, node in zip(shards, nodes))))


async def node_loop(server: Any, shard: tuple[np.ndarray, np.ndarray], config: NodeConfig, node: int) -> int:
    """One node: compute a mini-batch gradient at the ``w`` it has, push it and get the next ``w``; repeat.

    The loop ends when the server answers ``None`` (done or stopped); every call has a timeout, so a lost
    server ends it too. A worker slowed down with :func:`~dml_lesson.cluster.faults.slow_worker` makes its nodes
    sleep (without blocking the event loop) as a synchronous node step would; on a worker held with
    :func:`~dml_lesson.cluster.faults.hold_worker` a node waits before each push until the worker is released or the
    run is over (it then pushes, and the server answers ``None``).
    """
    X, y = aligned(shard)
    model, seed = config.model, config.seed
    reply = await asyncio.wait_for(server.join(node), CALL_TIMEOUT)
    clock = 0
    while reply is not None:
        w, version = np.array(reply[0]), reply[1]
        started = time.perf_counter()
        idx = minibatch_indices(len(y), config.batch_size, seed, node, clock)
        with np.errstate(all="ignore"):
            grad_sum = model.sums(w, X[idx], y[idx])[1]
        factor = slowdown()
        if factor > 1.0:
            await asyncio.sleep((factor - 1.0) * (time.perf_counter() - started))
        if held():
            await _wait_while_held(server)
        count = len(y) if isinstance(idx, slice) else len(idx)
        message = (node, clock, version, grad_sum.tolist(), count)  # one small pickle: cheaper than an array's frames
        reply = await asyncio.wait_for(server.push(message), CALL_TIMEOUT)
        clock += 1
    return clock


async def _wait_while_held(server: Any) -> None:
    """Wait until this worker is released (:func:`~dml_lesson.cluster.faults.release_workers`) or the run is over."""
    with waiting_on_hold():
        while held():
            if (await asyncio.wait_for(server.progress(), CALL_TIMEOUT))["stopped"]:
                return
            await asyncio.sleep(HOLD_POLL_SECONDS)


class AsyncServer:
    """The server as a Dask actor: ``w``, its version, and the record of every gradient received.

    Its methods are coroutines, so they run on the worker's event loop one at a time (no locks needed), and
    a node that must wait (under a staleness bound) waits without holding a thread.
    """

    def __init__(self, w0: np.ndarray, lr: float, n_nodes: int, n_updates: int, bound: int | None) -> None:
        self.w, self.lr, self.bound = np.array(w0, dtype=float), lr, bound
        self.n_nodes, self.n_updates = n_nodes, n_updates
        self.version = 0
        self.applied = [0]  # applied[v]: gradients applied to w before version v (v with no bound, n_nodes * v with)
        self.weights = [self.w]
        self.update_times: list[float] = []
        self.records: list[tuple[int, int, int, int, float]] = []  # node, clock, version read, staleness, time
        self.pending: dict[int, dict[int, tuple[NodeReply, int, float]]] = {}  # clock -> node -> push
        self.joined: set[int] = set()
        self.stopped = False
        self.limit = DIVERGENCE_FACTOR * 1e6  # |w| this large: the loss has long passed the divergence bound
        self.t0 = time.perf_counter()
        self.changed: asyncio.Condition | None = None

    def _condition(self) -> asyncio.Condition:
        if self.changed is None:  # made on the worker's event loop, where the methods run
            self.changed = asyncio.Condition()
        return self.changed

    async def _wait(self, predicate: Any, what: str) -> None:
        cond = self._condition()
        async with cond:
            try:
                await asyncio.wait_for(cond.wait_for(lambda: self.stopped or predicate()), CALL_TIMEOUT)
            except TimeoutError as exc:
                raise TimeoutError(f"the server waited more than {CALL_TIMEOUT:.0f} s for {what}") from exc

    async def _notify(self) -> None:
        cond = self._condition()
        async with cond:
            cond.notify_all()

    async def join(self, node: int) -> tuple[list[float], int] | None:
        """A node is ready: wait for all of them (so the run starts together), then hand out ``w``."""
        self.joined.add(node)
        if len(self.joined) == self.n_nodes:
            self.t0 = time.perf_counter()
            await self._notify()
        await self._wait(lambda: len(self.joined) == self.n_nodes, "every node to start")
        return None if self.stopped else (self.w.tolist(), self.version)

    async def push(self, message: tuple[int, int, int, list[float], int]) -> tuple[list[float], int] | None:
        """Take a node's gradient ``(node, clock, version read, gradient sum, rows)`` and return the ``w`` it
        should use next and its version (``None``: stop). Vectors travel as lists of floats (exact)."""
        if self.stopped:
            return None
        node, clock, version, grad_sum, count = message
        grad_sum = np.array(grad_sum)
        now = time.perf_counter() - self.t0
        if self.bound is None:
            self.records.append((node, clock, version, self._staleness(version), now))
            with np.errstate(all="ignore"):
                self._update(self.w - self.lr * (grad_sum / count), now, 1)
            if self.stopped:
                await self._notify()
                return None
            return self.w.tolist(), self.version
        self.pending.setdefault(clock, {})[node] = (NodeReply(grad_sum, count, 0.0), version, now)
        while len(self.pending.get(self.version, ())) == self.n_nodes and not self.stopped:
            self._commit(now)
        await self._notify()
        await self._wait(lambda: self.version >= clock + 1 - self.bound, f"update {clock + 1 - self.bound}")
        return None if self.stopped else (self.w.tolist(), self.version)

    def _staleness(self, version: int) -> int:
        """tau of a gradient computed at ``version`` and applied by the next update: the gradients applied to ``w``
        since that version (a clock's own gradients go in together, in the same update, so they do not count)."""
        return self.applied[self.version] - self.applied[version]

    def _commit(self, now: float) -> None:
        """Apply one clock: every node's gradient, combined in node order as the synchronous server does."""
        pushes = self.pending.pop(self.version)
        for node in sorted(pushes):
            _, version, arrived = pushes[node]
            self.records.append((node, self.version, version, self._staleness(version), arrived))
        with np.errstate(all="ignore"):
            self._update(self.w - self.lr * combine([pushes[n][0] for n in sorted(pushes)]), now, len(pushes))

    def _update(self, w: np.ndarray, now: float, gradients: int) -> None:
        self.w, self.version = w, self.version + 1
        self.applied.append(self.applied[-1] + gradients)
        self.weights.append(w)
        self.update_times.append(now)
        if self.version >= self.n_updates or not np.all(np.isfinite(w)) or np.abs(w).max() > self.limit:
            self.stopped = True  # done, or diverged: the losses computed afterwards say which

    async def finished(self, timeout: float) -> bool:
        """Wait until the run is over (all updates made, diverged, or stopped)."""
        cond = self._condition()
        async with cond:
            try:
                await asyncio.wait_for(cond.wait_for(lambda: self.stopped), timeout)
            except TimeoutError as exc:
                raise TimeoutError(f"the run did not finish within {timeout:.0f} s") from exc
        return True

    async def progress(self) -> dict[str, Any]:
        """Nodes ready, updates made, gradients received, and whether the run is over."""
        return {"joined": len(self.joined), "version": self.version, "gradients": len(self.records),
                "stopped": self.stopped}

    async def stop(self) -> None:
        """End the run: every waiting or pushing node gets ``None`` and leaves its loop."""
        self.stopped = True
        await self._notify()

    async def history(self) -> dict[str, np.ndarray]:
        """Everything recorded: weights after each update, update times, and one row per gradient."""
        rec = np.array(self.records, dtype=float).reshape(-1, 5)
        ints = rec[:, :4].astype(np.int64)
        return {"weights": np.array(self.weights), "update_times": np.array(self.update_times),
                "nodes": ints[:, 0], "clocks": ints[:, 1], "versions_read": ints[:, 2], "staleness": ints[:, 3],
                "arrival_times": rec[:, 4]}
