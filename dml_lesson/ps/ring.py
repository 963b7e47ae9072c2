"""Ring all-reduce on the Dask workers: the parameter server's loop without a server (notebook 12).

The parameter server gathers every node's gradient in one place. **All-reduce** has no server: the nodes
sum their vectors among themselves, and every node ends with the total. The **ring** algorithm does it with
each node talking only to its right-hand neighbour. Each node's vector is cut into ``N`` pieces:

1. **reduce-scatter**, ``N - 1`` rounds: in round ``r`` node ``i`` sends piece ``(i - r) mod N`` (the partial
   sum it has built so far) to node ``i + 1``, which adds its own copy of that piece. After the last round
   node ``i`` holds piece ``(i + 1) mod N`` summed over all nodes;
2. **all-gather**, ``N - 1`` rounds: the finished pieces travel once more around the ring, so every node
   ends with every summed piece.

Each node sends ``2 (N - 1)`` messages of ``d / N`` values: ``2 (N - 1) / N * d`` values per step, almost
independent of ``N``; the server's link carries ``N * d`` values each way. Here every piece is the result of a
Dask task pinned to its node's worker, and each message is a real transfer between worker processes
(:class:`RingAllReduce`). Node ``i`` lives on worker ``i % n_workers`` (as
:func:`~dml_lesson.cluster.shards.place_shards`
pins it), so ring neighbours alternate between the two workers and every hop crosses between processes; a hop
between two nodes on the same worker (``N`` odd, or one worker) moves nothing.
:func:`~dml_lesson.ps.bytecount.measure_bytes` reads the workers' transfer logs to count what Dask moved, per node,
for both topologies.

The ring adds piece ``c`` starting at node ``c + 1`` and going around: a different order from the server's
node order, so the two results agree to rounding (about 1e-15 relative), not bit for bit. Both are exact sums
of the same numbers.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from concurrent.futures import TimeoutError as FuturesTimeout
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
from distributed import Client, KilledWorker, wait

from ..cluster.client import restart_advice
from ..cluster.shards import Placement
from ..core.checks import check_choice, check_int
from ..core.settings import STEP_TIMEOUT
from .node import NodeConfig, NodeReply
from .transport import faulty_node_step

TOPOLOGIES = ("server", "ring")


def check_ring_options(topology: str, codec: Any, backups: int) -> str:
    """The topology, if the other options of the run work with it (the ring needs every node, uncompressed)."""
    if topology == "ring" and codec is not None:
        raise ValueError(f"codec must be None with topology='ring' (compressed gradients cannot be added piece by "
                         f"piece on the way), got {codec!r}")
    if topology == "ring" and backups:
        raise ValueError(f"backups must be 0 with topology='ring' (every node is a link of the ring), got {backups}")
    return topology


class Hop(NamedTuple):
    """One message of the ring: in ``phase`` (``"reduce-scatter"`` or ``"all-gather"``) round ``round``,
    node ``sender`` sends piece ``piece`` to node ``receiver``."""

    phase: str
    round: int
    sender: int
    receiver: int
    piece: int


def ring_schedule(n_nodes: int) -> list[Hop]:
    """Every message of one ring all-reduce over ``n_nodes`` nodes, in order (notebook 12 animates it).

    Rounds ``1 .. N-1`` of each phase; within a round all ``N`` nodes send at once.
    """
    n = check_int("n_nodes", n_nodes, low=1)
    hops = [Hop("reduce-scatter", r, i, (i + 1) % n, (i - r + 1) % n) for r in range(1, n) for i in range(n)]
    hops += [Hop("all-gather", r, i, (i + 1) % n, (i - r + 2) % n) for r in range(1, n) for i in range(n)]
    return hops


def pieces(vector: np.ndarray, n_nodes: int) -> list[np.ndarray]:
    """The vector cut into ``n_nodes`` contiguous pieces of near-equal length (copies, so each travels alone)."""
    return [np.array(p) for p in np.array_split(np.asarray(vector, dtype=float), n_nodes)]


def ring_allreduce(vectors: list[np.ndarray]) -> list[np.ndarray]:
    """The ring algorithm in one process: each node's final copy of the sum, following :func:`ring_schedule`.

    A reference for the Dask version (same pieces, same order of additions, so the same bits) and for the
    animation. ``vectors[i]`` is node ``i``'s vector; all must have the same length.
    """
    n = len(vectors)
    if n == 0:
        raise ValueError("vectors must hold at least one node's vector, got an empty list")
    held = [pieces(v, n) for v in vectors]  # held[i][c]: node i's current copy of piece c
    for hop_round in ring_rounds(ring_schedule(n)):
        sent = [(h, held[h.sender][h.piece]) for h in hop_round]  # everyone sends before anyone receives
        for h, value in sent:
            mine = held[h.receiver][h.piece]
            held[h.receiver][h.piece] = value + mine if h.phase == "reduce-scatter" else value
    return [np.concatenate(h) for h in held]


def ring_rounds(hops: list[Hop]) -> list[list[Hop]]:
    rounds: dict[tuple[str, int], list[Hop]] = {}
    for h in hops:
        rounds.setdefault((h.phase, h.round), []).append(h)
    return list(rounds.values())


def node_vector(reply: NodeReply, aggregate: str, d: int) -> np.ndarray:
    """What a node contributes to the all-reduce: ``d`` gradient values, its row count and its loss sum.

    ``"mean"``: the gradient sum (the total is divided by the total count afterwards); ``"sum"``: the node's
    mean gradient, with a count of 1 (the source's sum of node means). ``d + 2`` values in all.
    """
    grad = np.zeros(d) if reply.grad_sum is None else np.asarray(reply.grad_sum, dtype=float)
    count = float(reply.count)
    if aggregate == "sum" and reply.grad_sum is not None:
        grad, count = grad / reply.count, 1.0
    return np.concatenate([grad, [count, reply.loss_sum]])


# Tasks run on the workers. Each returns a small numpy array: the piece a node sends or holds.
def _first_piece(reply: NodeReply, aggregate: str, d: int, n: int, piece: int) -> np.ndarray:
    return pieces(node_vector(reply, aggregate, d), n)[piece]


def _add_piece(received: np.ndarray, reply: NodeReply, aggregate: str, d: int, n: int, piece: int) -> np.ndarray:
    return received + pieces(node_vector(reply, aggregate, d), n)[piece]


def keep_copy(received: np.ndarray) -> np.ndarray:
    return received


def _assemble(order: list[int], *held: np.ndarray) -> np.ndarray:
    out: list[np.ndarray | None] = [None] * len(order)
    for piece, value in zip(order, held):
        out[piece] = value
    return np.concatenate(out)


@dataclass
class RingStep:
    """The futures of one step's graph and the messages in it (``routes``: key -> (sender, receiver))."""

    result: Any
    futures: list[Any]
    routes: dict[str, tuple[int, int]]


def submit_ring(client: Client, placement: Placement, config: NodeConfig, w: np.ndarray, step: int,
                need_grad: bool, aggregate: str, tag: str, strict: bool = False) -> RingStep:
    """Submit one step: node gradients, reduce-scatter, all-gather; node 0 assembles its copy of the total.

    Each task is pinned to its node's worker. ``strict=False`` (training) lets Dask move a task elsewhere (a lost
    worker: the run goes on; on an external cluster with work stealing, also a busy one); ``strict=True``
    (measuring bytes) keeps every task where its node lives, so that the transfers are exactly the algorithm's.
    """
    n, d, addr = placement.n_nodes, len(w), placement.workers
    where = {"allow_other_workers": not strict, "pure": False}
    replies = [
        client.submit(faulty_node_step, shard, config, i, w, step, need_grad, key=f"ring-grad-{tag}-{i}",
                      workers=[addr[i]], **where)
        for i, shard in enumerate(placement.futures)
    ]
    routes: dict[str, tuple[int, int]] = {}
    # sending[i]: the future node i sends in the current round (its key names the message)
    sending = [client.submit(_first_piece, replies[i], aggregate, d, n, i, key=f"ring-rs-{tag}-0-{i}",
                             workers=[addr[i]], **where) for i in range(n)]
    futures = replies + sending
    held: dict[int, dict[int, Any]] = {i: {} for i in range(n)}
    for hop_round in ring_rounds(ring_schedule(n)):
        nxt: list[Any] = [None] * n
        for h in hop_round:
            msg = sending[h.sender]
            routes[msg.key] = (h.sender, h.receiver)
            if h.phase == "reduce-scatter":
                key = f"ring-rs-{tag}-{h.round}-{h.receiver}"
                nxt[h.receiver] = client.submit(_add_piece, msg, replies[h.receiver], aggregate, d, n, h.piece,
                                                key=key, workers=[addr[h.receiver]], **where)
            else:
                key = f"ring-ag-{tag}-{h.round}-{h.receiver}"
                nxt[h.receiver] = client.submit(keep_copy, msg, key=key, workers=[addr[h.receiver]], **where)
                held[h.receiver][h.piece] = nxt[h.receiver]
        futures += nxt
        if (hop_round[0].phase, hop_round[0].round) == ("reduce-scatter", n - 1):
            for i in range(n):  # the end of reduce-scatter: node i holds the sum of piece (i + 1) mod n
                held[i][(i + 1) % n] = nxt[i]
        sending = nxt
    if n == 1:
        held[0][0] = sending[0]
    order = sorted(held[0])
    result = client.submit(_assemble, order, *[held[0][p] for p in order], key=f"ring-total-{tag}",
                           workers=[addr[0]], **where)
    return RingStep(result, futures, routes)


class RingAllReduce:
    """A transport whose nodes all-reduce their gradients around a ring of Dask workers (``topology="ring"``).

    ``round`` has the signature of the server's transports (:mod:`dml_lesson.ps.transport`) but returns one
    reply: the all-reduced total (gradient, row count and loss sum over every node), as node 0 holds it. The
    client reads that copy to record the loss and to send the next ``w``; in a real all-reduce each node would
    apply the same update to its own copy of ``w``. The bytes returned are the ring's messages in the step,
    all nodes together (sent = received). A lost worker is survived the way Dask survives it: the step's
    tasks and the lost shards are recomputed from their lineage; if Dask gives up (``KilledWorker``) the run
    stops with a clear error.
    """

    def __init__(self, client: Client, place: Callable[[], Placement], config: NodeConfig, aggregate: str) -> None:
        self.client, self.config = client, config
        self.aggregate = check_choice("aggregate", aggregate, ("mean", "sum"))
        self.placement = place()
        self.recoveries: list[int] = []
        self.run = config.run or uuid.uuid4().hex
        self.last: RingStep | None = None

    def round(self, w: np.ndarray, step: int, need_grad: bool, wait_for: int | None = None):
        """One all-reduce; ``wait_for`` must be None (the ring needs every node)."""
        if wait_for is not None and wait_for < self.placement.n_nodes:
            raise ValueError("the ring all-reduce needs every node in every step: backups must be 0")
        ring = submit_ring(self.client, self.placement, self.config, w, step, need_grad, self.aggregate,
                           f"{self.run}-{step}")
        try:
            wait(ring.futures, timeout=STEP_TIMEOUT)  # every node has its copy of the total
            total = ring.result.result(timeout=STEP_TIMEOUT)
        except (TimeoutError, FuturesTimeout) as exc:
            raise TimeoutError(f"the ring did not finish step {step} within {STEP_TIMEOUT:.0f} s: the cluster may "
                               f"be stuck or overloaded; {restart_advice(self.client)}") from exc
        except KilledWorker as exc:
            raise RuntimeError(f"a worker of the ring died during step {step} more often than Dask retries "
                               f"(distributed.scheduler.allowed-failures); {restart_advice(self.client)}") from exc
        finally:
            self.last = ring
        d = len(w)
        # with aggregate="sum" the total is already the sum of node means: the server's combine divides by 1
        count = 1 if self.aggregate == "sum" and need_grad else int(round(total[d]))
        reply = NodeReply(total[:d] if need_grad else None, count, float(total[d + 1]))
        nbytes = ring_message_values(self.placement.n_nodes, d + 2) * 8
        return [reply], nbytes, nbytes


def ring_message_values(n_nodes: int, n_values: int) -> int:
    """Values sent by all nodes together in one ring all-reduce of ``n_values`` values (pieces as cut)."""
    sizes = [len(p) for p in np.array_split(np.zeros(n_values), n_nodes)]
    return sum(sizes[h.piece] for h in ring_schedule(n_nodes))
