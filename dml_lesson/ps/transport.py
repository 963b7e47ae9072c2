"""How the server reaches its nodes each step: direct calls to actors, or one scheduled task per node.

Both give the same replies bit for bit; they differ in cost. ``"actors"`` (the default) keeps each shard in a
Dask actor on its worker and calls it directly, with no scheduler round trip: a few milliseconds per step.
``"tasks"`` submits one task per node per step through the scheduler: slower, but every step shows in the
dashboard's task stream (notebooks 03 and 04 use it to show where tasks ran). Actors can also overlap the loss pass
with the messages (``overlap=True``, notebook 05): each reply carries the loss of the step before.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable, Coroutine
from concurrent.futures import TimeoutError as FuturesTimeout
from typing import Any, Protocol, TypeVar

import numpy as np
from distributed import Client, Future, KilledWorker

from .._dask import killed_worker_deaths
from ..cluster.client import restart_advice, worker_addresses
from ..cluster.faults import slowed_down, straggle
from ..cluster.shards import Placement, discard
from ..cluster.timeline import node_step_key
from ..core.settings import BACKUP_POLL_SECONDS, MAX_RECOVERIES, RECOVER_WAIT, STEP_TIMEOUT, WATCH_SECONDS
from .comm import message_nbytes
from .node import LossPass, NodeConfig, NodeReply, aligned, node_step

T = TypeVar("T")
TRANSPORTS = ("actors", "tasks")
Round = tuple[list[NodeReply | None], int, int]
"""Replies in node order (``None``: not waited for), bytes sent, bytes received."""


class Transport(Protocol):
    def round(self, w: np.ndarray, step: int, need_grad: bool, wait_for: int | None = None) -> Round:
        """Send ``w`` to the nodes: the replies in node order (``None``: not waited for), bytes sent, received."""
        ...


def connect(client: Client, placement: Placement, config: NodeConfig, kind: str, overlap: bool = False,
            prime: np.ndarray | None = None) -> Transport:
    """A transport of the given kind (``"actors"`` or ``"tasks"``) to the placement's nodes; overlapped
    (actors only), its nodes first start the loss pass at ``prime`` (the last step's ``w``), if given."""
    if kind == "actors":
        return ActorTransport(client, placement, config, overlap, prime)
    return TaskTransport(client, placement, config)


class Resilient:
    """A transport that survives lost workers: it re-places the shards (recomputed from their lineage, pinned
    to the workers alive now, the nanny's replacements included) and repeats the step with the same ``w``.

    Node steps are pure, so a repeated step gives the same replies: a run with a fault ends with the same
    weights as a run without one. ``recoveries`` lists the steps at which a recovery happened. Overlapped, the
    new nodes first recompute the loss the lost ones owed: that of the last round's ``w``.
    """

    def __init__(self, client: Client, place: Callable[[], Placement], config: NodeConfig, kind: str,
                 overlap: bool = False) -> None:
        self.client, self.place, self.config, self.kind, self.overlap = client, place, config, kind, overlap
        self.placement = place()
        self.n_workers = len(set(worker_addresses(client)))
        self.inner = connect(client, self.placement, config, kind, overlap)
        self.recoveries: list[int] = []
        self.sent: np.ndarray | None = None  # the last round's w: overlapped, the nodes owe its loss

    def round(self, w: np.ndarray, step: int, need_grad: bool, wait_for: int | None = None) -> Round:
        answer = self._retry(lambda: self.inner.round(w, step, need_grad, wait_for), step)
        self.sent = w
        return answer

    def pending_losses(self, step: int) -> list[NodeReply]:
        """Overlapped: each node's loss of the last round's ``w`` (:meth:`ActorTransport.pending_losses`)."""
        return self._retry(lambda: self.inner.pending_losses(step), step)  # type: ignore[attr-defined]

    def _retry(self, attempt: Callable[[], T], step: int) -> T:
        while True:
            try:
                return attempt()
            except TimeoutError:  # an OSError too, but the cluster is stuck, not short of a worker: no retry
                raise
            except LOST_WORKER as exc:
                if len(self.recoveries) >= MAX_RECOVERIES:
                    raise RuntimeError(
                        f"workers were lost {len(self.recoveries) + 1} times during this run (at steps "
                        f"{self.recoveries + [step]}); giving up. Check the workers' memory (dashboard: "
                        f"dml.dashboard_link()); {restart_advice(self.client)}"
                    ) from exc
                self._recover(step)
            except KilledWorker as exc:
                deaths = killed_worker_deaths(exc) or 0
                tries = f"{deaths} time{'s' if deaths != 1 else ''}" if deaths else "several times"
                raise RuntimeError(
                    f"step {step} failed: the workers running one of its node tasks died {tries} "
                    "(Dask stops retrying a task after distributed.scheduler.allowed-failures worker deaths, 3 by "
                    "default), so the task may be what kills them, e.g. by running out of memory. Check the "
                    "workers' memory (dml.dashboard_link()); use less data per node (more nodes, smaller batches) "
                    f"or more memory per worker; {restart_advice(self.client)}"
                ) from exc

    def _recover(self, step: int) -> None:
        self.recoveries.append(step)
        discard(self.client, self.placement)  # its tasks may be pinned to the lost address: cancel, build anew
        deadline = time.monotonic() + RECOVER_WAIT  # let the nanny bring the replacement up, to spread the shards
        while len(worker_addresses(self.client)) < self.n_workers and time.monotonic() < deadline:
            time.sleep(0.1)  # past the deadline, go on with the workers that are alive
        if not worker_addresses(self.client):
            raise RuntimeError(f"every worker was lost at step {step} and none came back within "
                               f"{RECOVER_WAIT:.0f} s; {restart_advice(self.client)}")
        self.placement = self.place()
        prime = self.sent if self.overlap else None
        self.inner = connect(self.client, self.placement, self.config, self.kind, self.overlap, prime)


def _timeout_error(step: int) -> TimeoutError:
    return TimeoutError(
        f"the nodes did not answer step {step} within {STEP_TIMEOUT:.0f} s: the cluster may be stuck or "
        f"overloaded; {restart_advice()}"
    )


INLINE_CELLS = 1 << 16
"""Shards with at most this many entries in ``X`` are computed on the worker's event loop (tens of
microseconds); larger ones in a thread."""


def faulty_node_step(*args: Any) -> NodeReply:
    """:func:`~dml_lesson.ps.node.node_step` on a worker that may have been slowed down on purpose (notebook 07).

    The kernel knows nothing of faults: the transport wraps it, and the fault module's setting decides whether
    the worker sleeps after computing (:func:`~dml_lesson.cluster.faults.straggle`).
    """
    started = time.perf_counter()
    reply = node_step(*args)
    straggle(started)
    return reply


class ActorStateLost(RuntimeError):
    """The actor was recreated by Dask after its worker died and has lost its run settings (or its loss pass)."""


class WorkerLost(RuntimeError):
    """The scheduler lost the worker of an actor called (its future is no longer ``"finished"``): raised by
    :func:`call_actors` and :class:`ActorTransport` within ``WATCH_SECONDS``."""


LOST_WORKER = (WorkerLost, ActorStateLost, OSError)
"""What a round raises when an actor's worker is gone, which :class:`Resilient` recovers from: its own
:class:`WorkerLost`; ``OSError`` from Dask's actor call ("Unable to contact Actor's worker"); :class:`ActorStateLost`
from an actor Dask rebuilt elsewhere. (``TimeoutError`` is an ``OSError`` too: :class:`Resilient` lets it through.)"""


class ShardActor:
    """A Dask actor holding one node's shard: each step is a direct call, no scheduler round trip."""

    def __init__(self, shard: tuple[np.ndarray, np.ndarray], node: int) -> None:
        self.shard, self.node = aligned(shard), node
        self.config: NodeConfig | None = None
        self.state, self.losses = {}, LossPass()

    def configure(self, config: NodeConfig) -> None:
        """Set the run's settings once, so that each step only carries ``w``; forget the last run's state."""
        self.config, self.state, self.losses = config, {}, LossPass()

    async def step(self, w: np.ndarray, step: int, need_grad: bool = True, with_loss: bool = True) -> NodeReply:
        """Run :func:`node_step` on the shard held in memory.

        A coroutine, so Dask runs it on the worker's event loop: for a small shard that saves the hop to the
        actor thread and back (about a tenth of a millisecond per call, measured). A large shard, or a worker
        slowed down on purpose, computes in a thread instead, so that the worker keeps answering meanwhile.
        """
        if self.config is None:
            raise ActorStateLost("this actor was rebuilt after its worker died: configure it again")
        args = (self.shard, self.config, self.node, w, step, need_grad, self.state, with_loss)
        if self.shard[0].size <= INLINE_CELLS and not slowed_down():
            return node_step(*args)  # a slowed-down worker is never here: it sleeps, so it computes in a thread
        return await asyncio.get_running_loop().run_in_executor(None, faulty_node_step, *args)

    async def overlapped(self, w: np.ndarray, step: int, need_grad: bool = True) -> NodeReply:
        """An overlapped step (notebook 05): the gradient at ``w``, with the loss at the previous step's ``w`` (NaN
        at step 0) computed in a thread while the messages travelled; the loss at ``w`` starts as the reply leaves."""
        if self.config is None or (step > 0 and self.losses.pending is None):
            raise ActorStateLost("this actor was rebuilt after its worker died: configure it again")
        reply = await self.step(w, step, True, False) if need_grad else NodeReply(None, 0, math.nan)
        previous = await self.losses.take()
        self.losses.start(self.shard, self.config, w, free=reply.loss_sum)
        return reply._replace(loss_sum=previous)

    async def prime(self, w: np.ndarray) -> None:
        """Start the loss pass at ``w``: a new actor after a lost worker recomputes the loss the lost one owed."""
        self.losses.start(self.shard, self.config, w)

    async def pending_loss(self) -> NodeReply:
        """The loss the last overlapped step started: the run's last ``w``'s."""
        return NodeReply(None, 0, await self.losses.take())


class ActorTransport:
    """One :class:`ShardActor` per node, created once per placement and reused.

    Calls go through Dask's public actor API (``actor.step(...)`` returns an awaitable ``ActorFuture``). The
    actors' own futures (from ``client.submit(ShardActor, ..., actor=True)``, kept in the placement's extras
    next to the actors) tell whether the scheduler still has each actor's worker.
    """

    def __init__(self, client: Client, placement: Placement, config: NodeConfig, overlap: bool = False,
                 prime: np.ndarray | None = None) -> None:
        actors, futures = placement.extras.get("actors"), placement.extras.get("actor_futures")
        if actors is None or futures is None:
            futures = [
                client.submit(ShardActor, shard, node, workers=[addr], allow_other_workers=True, actor=True)
                for node, (shard, addr) in enumerate(zip(placement.futures, placement.workers))
            ]
            actors = [f.result(timeout=STEP_TIMEOUT) for f in futures]
            placement.extras["actors"] = actors
            placement.extras["actor_futures"] = futures
        check_alive(futures)
        for method, arg in [("configure", config)] + ([("prime", prime)] if prime is not None else []):
            for call in [getattr(a, method)(arg) for a in actors]:  # every actor configured before any is primed
                call.result(timeout=STEP_TIMEOUT)
        self.actors, self.futures, self.loop = actors, futures, client.loop
        self.method = "overlapped" if overlap else "step"
        self.busy: dict[int, Any] = {}  # nodes still working on a step whose answer was not waited for

    def round(self, w: np.ndarray, step: int, need_grad: bool, wait_for: int | None = None) -> Round:
        self.busy = {n: c for n, c in self.busy.items() if not c.done()}
        if wait_for is None or wait_for >= len(self.actors):  # every node answers: let the busy ones finish
            check_alive(self.futures)
            for call in self.busy.values():
                _result(call, step)
            self.busy = {}
            try:  # one hop to the client's event loop for the whole round, not one per node and way
                replies = self._call_all(self.method, w, step, need_grad)
            except TimeoutError as exc:
                raise _timeout_error(step) from exc
            return replies, *_bytes(w, step, need_grad, len(self.actors), replies)
        check_alive(self.futures)
        calls = {n: _call(a, self.futures, self.method, w, step, need_grad)
                 for n, a in enumerate(self.actors) if n not in self.busy}
        replies = _collect(calls, len(self.actors), wait_for, step)
        self.busy.update({n: c for n, c in calls.items() if replies[n] is None})
        return replies, *_bytes(w, step, need_grad, len(calls), replies)

    def pending_losses(self, step: int) -> list[NodeReply]:
        """Overlapped: each node's loss of the last round's ``w`` (the run's last), in node order."""
        try:
            return self._call_all("pending_loss")
        except TimeoutError as exc:
            raise _timeout_error(step) from exc

    def _call_all(self, method: str, *args: Any) -> list[NodeReply]:
        """Every actor's ``method(*args)`` in one hop to the client's event loop; the replies in node order."""
        calls = call_actors(self.actors, self.futures, method, *args)
        return [NodeReply(*answer) for answer in run_on_loop(self.loop, calls, STEP_TIMEOUT)]


class TaskTransport:
    """One task per node per step, submitted through the scheduler to the node's worker."""

    def __init__(self, client: Client, placement: Placement, config: NodeConfig) -> None:
        self.client, self.placement, self.config = client, placement, config

    def round(self, w: np.ndarray, step: int, need_grad: bool, wait_for: int | None = None) -> Round:
        p = self.placement
        calls = {
            node: self.client.submit(
                faulty_node_step, shard, self.config, node, w, step, need_grad,
                key=node_step_key(node, step, self.config.run),
                workers=[addr], allow_other_workers=True, pure=False,
            )
            for node, (shard, addr) in enumerate(zip(p.futures, p.workers))
        }
        replies = _collect(calls, len(calls), wait_for, step)
        return replies, *_bytes(w, step, need_grad, len(calls), replies)


def run_on_loop(loop: Any, coro: Coroutine[Any, Any, T], timeout: float) -> T:
    """Run ``coro`` on the client's event loop (``client.loop``) and wait for its result, ``timeout`` s at most
    (else ``TimeoutError``, the coroutine cancelled).

    A Stop in the notebook (``KeyboardInterrupt``) cancels the coroutine on the loop and reaches the learner as a
    plain ``KeyboardInterrupt``. (Dask's ``distributed.utils.sync``, which ``client.sync`` uses, can print a
    ``NameError`` from its loop thread when it is stopped before its coroutine has started.)
    """
    future = asyncio.run_coroutine_threadsafe(coro, loop.asyncio_loop)
    try:
        return future.result(timeout)
    except BaseException:  # a timeout, or a Stop: nothing keeps running on the loop
        future.cancel()
        raise


async def call_actors(actors: list[Any], futures: list[Future], method: str, *args: Any) -> list[Any]:
    """Call ``method(*args)`` on every actor at once from the client's event loop, as the server does (and
    notebook 12's calibration); the answers in the actors' order.

    Dask's public actor API: ``getattr(actor, method)(*args)`` returns an awaitable ``ActorFuture``; all calls are
    made, then awaited in turn. Run it on the client's loop (:func:`run_on_loop`): one hop to the loop for the
    whole round. ``actors`` are the handles; ``futures`` the futures they were created from
    (``client.submit(cls, ..., actor=True)``), in the same order: their status tells whether the scheduler still
    has each actor's worker; ``*args`` are the same for every actor.

    Raises :class:`WorkerLost` as soon as the scheduler has lost one of the actors' workers (checked before the
    calls, then every ``WATCH_SECONDS``: without that watch, a call to a dead worker's address keeps trying to
    connect for Dask's connect timeout, 20 s or more); ``OSError``, Dask's own error when it cannot reach an
    actor's worker; or the first error ``method`` raised on a worker, in the actors' order.
    """
    check_alive(futures)
    calls = [_call(actor, futures, method, *args) for actor in actors]  # all sent before the first await
    task, loop, lost = asyncio.current_task(), asyncio.get_running_loop(), []

    def watch() -> None:  # a timer, not asyncio.wait: that costs a quarter of a millisecond per round
        try:
            check_alive(futures)
        except WorkerLost as exc:
            lost.append(exc)
            if task is not None:
                task.cancel()
        else:
            timer[0] = loop.call_later(WATCH_SECONDS, watch)

    timer = [loop.call_later(WATCH_SECONDS, watch)]
    answers: list[Any] = []
    try:
        for call in calls:  # awaited in turn, not gathered: no task per call (measured a little cheaper)
            try:
                answers.append(await call)
            except Exception as exc:  # raised below, once every call has ended
                answers.append(exc)
    except asyncio.CancelledError:
        if lost and task is not None:
            task.uncancel()  # the watch's cancel becomes WorkerLost: nothing else was cancelled
            raise lost[0] from None
        raise
    finally:
        timer[0].cancel()
    for answer in answers:  # the first error in the actors' order
        if isinstance(answer, Exception):
            raise answer
    return answers


def check_alive(futures: list[Future]) -> None:
    """Raise :class:`WorkerLost` when the scheduler no longer holds one of the actors behind ``futures``.

    An actor's future (public ``Future.status``) stays ``"finished"`` while its worker lives. When the worker
    goes, the scheduler marks the actor's key erred (``"error"``; Dask does not rebuild actors) or lost
    (``"lost"``); ``"cancelled"`` once released. The actor handle holds a future of the same key, which shares this
    state: Dask's own actor call checks the same thing. The error names the first such future and its status.
    """
    for future in futures:
        if future.status not in ("finished", "pending"):
            raise WorkerLost(f"the worker holding actor {future.key} was lost (its future is {future.status!r})")


def _call(actor: Any, futures: list[Future], method: str, *args: Any) -> Any:
    """``getattr(actor, method)(*args)``: Dask's public actor call, an ``ActorFuture``.

    Dask's handle refuses a call with a ``RuntimeError`` when its worker was lost: that case is
    :class:`WorkerLost`, told by the futures' status, not by the message.
    """
    try:
        return getattr(actor, method)(*args)
    except RuntimeError:
        check_alive(futures)  # raises WorkerLost, chained to Dask's error
        raise


def _result(call: Any, step: int) -> NodeReply:
    try:
        return NodeReply(*call.result(timeout=STEP_TIMEOUT))
    except (TimeoutError, FuturesTimeout) as exc:
        raise _timeout_error(step) from exc


def _collect(calls: dict[int, Any], n_nodes: int, wait_for: int | None, step: int) -> list[NodeReply | None]:
    """Replies in node order: all of them, or (backup workers) those of the first ``wait_for`` nodes to
    finish, ``None`` for the others."""
    if wait_for is None or wait_for >= len(calls):
        replies: list[NodeReply | None] = [None] * n_nodes
        for node, call in calls.items():
            replies[node] = _result(call, step)
        return replies
    deadline = time.monotonic() + STEP_TIMEOUT
    while len(done := [n for n, c in calls.items() if c.done()]) < wait_for:
        if time.monotonic() > deadline:
            raise _timeout_error(step)
        time.sleep(BACKUP_POLL_SECONDS)
    return [_result(calls[n], step) if n in done else None for n in range(n_nodes)]


def _bytes(w: np.ndarray, step: int, need_grad: bool, n_sent: int, replies: list) -> tuple[int, int]:
    """Bytes of the step's messages as Dask serializes them: ``w`` to each node asked, each reply back."""
    sent = n_sent * message_nbytes((w, step, need_grad))
    received = sum(message_nbytes(tuple(r)) for r in replies if r is not None)
    return sent, received
