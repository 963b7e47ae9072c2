"""The bytes each topology really moves between the workers, counted from Dask's transfer logs (notebook 12).

:func:`measure_bytes` runs a few steps of the parameter server (:func:`submit_server`, the server on node 0's
worker) or of the ring (:func:`~dml_lesson.ps.ring.submit_ring`) as Dask tasks pinned to their nodes' workers,
reads what Dask moved between worker processes, and compares it with what the algorithm should send
(:func:`expected_bytes`): a :class:`ByteReport` per topology.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
from distributed import Client, wait

from .._dask import clear_incoming_transfers, incoming_transfers
from ..cluster.shards import Placement
from ..core.checks import check_choice, check_int
from ..core.settings import STEP_TIMEOUT
from .node import NodeConfig
from .ring import (
    TOPOLOGIES,
    RingStep,
    keep_copy,
    node_vector,
    ring_schedule,
    submit_ring,
)
from .transport import faulty_node_step

SERVER = -1
"""The server's endpoint number in :class:`ByteReport` (nodes are 0 .. N-1)."""


def submit_server(client: Client, placement: Placement, config: NodeConfig, w: np.ndarray, step: int,
                  tag: str, strict: bool = True) -> RingStep:
    """The parameter server's step as Dask tasks, to measure its transfers: the server lives on node 0's worker,
    sends one copy of ``w`` to each node, receives each node's ``d + 2`` values and adds them in node order."""
    addr, home = placement.workers, placement.workers[0]
    where = {"allow_other_workers": not strict, "pure": False}
    routes: dict[str, tuple[int, int]] = {}
    vectors = []
    for i, shard in enumerate(placement.futures):
        w_i = client.submit(keep_copy, w, key=f"ps-w-{tag}-{i}", workers=[home], **where)
        reply = client.submit(faulty_node_step, shard, config, i, w_i, step, True, key=f"ps-grad-{tag}-{i}",
                              workers=[addr[i]], **where)
        vec = client.submit(node_vector, reply, "mean", len(w), key=f"ps-vec-{tag}-{i}", workers=[addr[i]], **where)
        routes[w_i.key], routes[vec.key] = (SERVER, i), (i, SERVER)
        vectors += [w_i, reply, vec]
    total = client.submit(_add_all, *vectors[2::3], key=f"ps-total-{tag}", workers=[home], **where)
    return RingStep(total, vectors + [total], routes)


def _add_all(*vectors: np.ndarray) -> np.ndarray:
    total = vectors[0]
    for v in vectors[1:]:
        total = total + v
    return total


@dataclass(frozen=True)
class ByteReport:
    """Bytes per step that each endpoint (node ``0 .. N-1``, or :data:`SERVER`) sent and received.

    ``measured_*``: from the workers' transfer logs (what Dask moved between worker processes, averaged over the
    steps); ``expected_*``: the algorithm's messages between nodes on different workers (messages between nodes
    on the same worker move nothing); ``textbook_*``: every message counted, as on a cluster with one machine per
    node. Payloads only: Dask's headers are not in its logs. ``repeated``: transfers of a message other than its
    first arrival at its receiver's worker (a retried transfer, or a copy fetched back after Dask dropped it),
    left out above; :func:`measure_bytes` pauses Dask's Active Memory Manager, which would drop such copies.
    """

    topology: str
    n_nodes: int
    n_values: int
    n_steps: int
    workers: tuple[str, ...]
    measured_sent: dict[int, float]
    measured_received: dict[int, float]
    expected_sent: dict[int, int]
    expected_received: dict[int, int]
    textbook_sent: dict[int, int]
    textbook_received: dict[int, int]
    worker_bytes: dict[str, float]
    repeated: int = 0

    @property
    def busiest(self) -> int:
        """The endpoint with the most textbook traffic (the server, in the server topology)."""
        return max(self.textbook_sent, key=lambda e: self.textbook_sent[e] + self.textbook_received[e])


def measure_bytes(client: Client, placement: Placement, config: NodeConfig, topology: str, n_steps: int = 2,
                  seed: int = 0) -> ByteReport:
    """Run ``n_steps`` steps of ``topology`` as Dask tasks and count, from the workers' transfer logs, the
    bytes each node (and the server) sent and received per step (notebook 12).

    The gradient, row count and loss sum travel together (``d + 2`` values). ``w`` is random (seeded): the
    bytes do not depend on it.
    """
    topology = check_choice("topology", topology, TOPOLOGIES)
    n_steps = check_int("n_steps", n_steps, low=1, high=50)
    d = placement.n_weights
    w = np.random.default_rng([seed, 11]).normal(size=d)
    with memory_manager_paused(client):
        client.run(clear_incoming_transfers)
        routes: dict[str, tuple[int, int]] = {}
        for step in range(n_steps):
            tag = f"bytes-{uuid.uuid4().hex}"
            graph = (submit_ring(client, placement, config, w, step, True, "mean", tag, strict=True)
                     if topology == "ring" else submit_server(client, placement, config, w, step, tag, strict=True))
            wait(graph.futures, timeout=STEP_TIMEOUT)
            graph.result.result(timeout=STEP_TIMEOUT)
            routes.update(graph.routes)
        logs = client.run(incoming_transfers)
    sent, received, per_worker, repeated = count_transfers(logs, routes, placement.workers, n_steps)
    expected, textbook = expected_bytes(topology, placement.workers, d)
    ends = sorted(textbook[0])
    return ByteReport(topology, placement.n_nodes, d + 2, n_steps, tuple(placement.workers),
                      {e: sent.get(e, 0.0) for e in ends}, {e: received.get(e, 0.0) for e in ends},
                      *expected, *textbook, per_worker, repeated)


@contextlib.contextmanager
def memory_manager_paused(client: Client) -> Iterator[None]:
    """Pause Dask's Active Memory Manager for the block, if it runs (notebook 12's byte counts).

    At each pass (every 2 s by default) its ReduceReplicas policy drops the extra copies of data that several
    workers hold, keeping one (more while waiting tasks on other workers need it); a later task on a worker that
    lost its copy then fetches the data again: a transfer that is the memory manager's, not the algorithm's
    (seen: a ring piece of 104 bytes fetched back 50-80 ms later, under load). The course's own cluster starts
    without it (:mod:`dml_lesson.cluster.client`); on another cluster it is stopped for the block and started again
    after.
    """
    was_running = bool(client.amm.running())
    if was_running:
        client.amm.stop()
    try:
        yield
    finally:
        if was_running:
            client.amm.start()


def count_transfers(logs: dict[str, list[dict]], routes: dict[str, tuple[int, int]], workers: list[str],
                    n_steps: int) -> tuple[dict[int, float], dict[int, float], dict[str, float], int]:
    """Bytes per step sent and received by each endpoint, and by each worker, from the workers' transfer logs.

    ``logs`` maps each receiving worker to its log entries (``{"keys": {key: nbytes}, "who": sender}``),
    ``routes`` each message's key to ``(sender, receiver)`` endpoints, and node ``i`` lives on ``workers[i]``
    (the server on ``workers[0]``). A message counts once, when it arrives at its receiver's worker; any other
    transfer of it (a retry, a copy fetched back after Dask dropped it) is counted in ``repeated`` instead.
    """
    home = {SERVER: workers[0], **dict(enumerate(workers))}
    sent: dict[int, float] = {}
    received: dict[int, float] = {}
    per_worker: dict[str, float] = {a: 0.0 for a in workers}
    arrived: set[str] = set()
    repeated = 0
    for receiver_worker, entries in logs.items():
        for entry in entries:
            for key, nbytes in entry["keys"].items():
                if key not in routes:
                    continue
                src, dst = routes[key]
                if key in arrived or receiver_worker != home[dst]:
                    repeated += 1
                    continue
                arrived.add(key)
                sent[src] = sent.get(src, 0.0) + nbytes / n_steps
                received[dst] = received.get(dst, 0.0) + nbytes / n_steps
                per_worker[receiver_worker] = per_worker.get(receiver_worker, 0.0) + nbytes / n_steps
                per_worker[entry["who"]] = per_worker.get(entry["who"], 0.0) + nbytes / n_steps
    return sent, received, per_worker, repeated


def expected_bytes(topology: str, workers: list[str] | tuple[str, ...], n_weights: int,
                   itemsize: int = 8) -> tuple[tuple[dict[int, int], dict[int, int]], tuple[dict[int, int], ...]]:
    """Per-endpoint bytes of one step, ``((sent, received) between workers, (sent, received) textbook)``.

    ``workers[i]`` is node ``i``'s worker; the server lives on node 0's worker. The server sends ``w``
    (``n_weights`` values) to each node and receives ``n_weights + 2`` values (gradient, count, loss) from each;
    the ring all-reduces those ``n_weights + 2`` values.
    """
    n, n_values = len(workers), n_weights + 2
    if topology == "ring":
        sizes = [len(p) for p in np.array_split(np.zeros(n_values), n)]
        messages = [(h.sender, h.receiver, sizes[h.piece]) for h in ring_schedule(n)]
        where = dict(enumerate(workers))
    else:
        messages = [m for i in range(n) for m in ((SERVER, i, n_weights), (i, SERVER, n_values))]
        where = {SERVER: workers[0], **dict(enumerate(workers))}
    ends = sorted(where)
    result = []
    for crossing in (True, False):
        sent, received = dict.fromkeys(ends, 0), dict.fromkeys(ends, 0)
        for src, dst, values in messages:
            if where[src] != where[dst] or not crossing:
                sent[src] += values * itemsize
                received[dst] += values * itemsize
        result.append((sent, received))
    return result[0], result[1]

