"""When does distributing pay? A cost model of one synchronous step, calibrated on this machine (notebook 12).

One step of data-parallel gradient descent on ``n_rows`` rows and ``d`` weights over ``N`` nodes costs

- **compute**: ``c * n_rows * d / N`` seconds, ``c`` the time per row and weight of one gradient (measured);
- **communication**. A link is described by its latency ``a`` (the time one message takes from start to
  end), its bandwidth ``B`` (bytes per second) and its gap ``g`` (how much later the link's *next* message is
  done when messages are in flight at once: LogP's gap, the minimum interval between a sender's messages). A message of
  ``m = 8 (d + 2)`` bytes (the gradient with its row count and loss sum) then costs (:func:`comm_time`):

  - parameter server, one process: its one link sends ``w`` to ``N`` nodes and receives ``N`` gradients, all
    in flight at once: ``2 a + (2 N - 2) g + 2 N m / B``;
  - **sharded** parameter server (Li et al. 2014, OSDI, "Scaling distributed machine learning with the
    parameter server"): the weights are split by key range over ``S`` server shards; each node sends ``m / S``
    bytes to each shard and gets as much back, so a shard's link carries ``2 N m / S`` bytes and a node sends
    ``S`` messages each way. Push, then pull, each as long as its busiest link. With every node also a shard
    (``shards="N"``, a common co-located deployment; Li et al. use a separate server group) a node's link carries
    ``2 (N - 1) m / N`` bytes: the ring's. Its time equals the ring's only under ``g = a``, full-duplex links
    that send one message at a time, a non-blocking switch without incast, and push not overlapped with pull;
  - ring all-reduce: every node's link carries ``2 (N - 1)`` pieces of ``m / N`` bytes, one per round, all
    links at once: ``2 (N - 1) (a + m / (N B))``;
  - tree all-reduce, unpipelined (a binomial tree, one whole message per node and round: reduce to a root, then
    broadcast, ``ceil(log2 N)`` rounds each; Thakur, Rabenseifner & Gropp 2005): ``2 ceil(log2 N) (a + m / B)``:
    few rounds, whole vectors. Pipelined trees (NCCL's double binary tree) cut the vector into chunks and move
    nearly the ring's bytes; recursive doubling takes ``log2 N (a + m / B)``. Neither is modelled.

  The datacenter presets give only ``a`` and ``B`` and take ``g = a`` (the classic latency-bandwidth model: a
  link handles its messages one after the other), so the server's cost there is ``2 N (a + m / B)``.

- **overlap** (:func:`step_time`): production systems (PyTorch DDP: Li et al. 2020, VLDB, "PyTorch
  Distributed") send the gradient in ``buckets`` parts, each as soon as the backward pass has computed it, while
  the rest is still being computed. Only the backward pass overlaps: here the half ``X^T r`` of the gradient
  (:data:`BACKWARD_SHARE`); the forward pass ``X w`` comes first. Each bucket is an all-reduce of ``m / buckets``
  bytes and pays its latency again (:func:`bucket_comm_time`): with ``A`` the backward compute and ``C_b`` one
  bucket's communication, the ``k`` buckets form a two-stage pipeline,
  ``(T_comp - A) + A / k + C_b + (k - 1) max(A / k, C_b)``. Never faster than ``max(T_comp, T_comm)``; slower than
  no overlap when the latency of the extra buckets outweighs the compute hidden. PyTorch's default bucket is
  25 MB, so a gradient smaller than that is one bucket and does not overlap.

On this machine (:func:`local_step_time`) ``N`` nodes share 2 worker processes (``cores=2``), each computing its
nodes one after the other, more slowly when the data is larger than the processor's cache (it then streams from
memory); and a step has a fixed cost besides its messages (the client's loop, the hop to the worker's compute
thread, for the ring three task hops in a row). :func:`~dml_lesson.analysis.calibration.calibrate` measures ``c``,
the cache size and the compute per value from memory; ``a``, ``B`` and ``g`` of the two links (the server's
direct calls; the ring's task hops through the scheduler); and the fixed cost of a one-node step of each topology, with
small benchmarks separate from the training runs that check the model (``benchmarks/scaling.py``).

The speedup is the single machine's step time (``c * n_rows * d``, no communication) over the distributed
step time. **The rule**: distributing over ``N`` nodes pays when the compute it saves,
``c * n_rows * d * (1 - 1/N)``, exceeds the communication it adds.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..core.checks import check_choice, check_float, check_int
from ..ps.ring import TOPOLOGIES

ITEMSIZE = 8


@dataclass(frozen=True)
class Network:
    """A link for the model: ``latency`` ``a`` (s per message), ``bandwidth`` ``B`` (bytes/s) and
    ``overhead``, the gap ``g`` (s per extra message in flight at once, LogP's gap; ``None``: ``g = a``, the classic
    model; on this machine's task hops ``g`` can exceed ``a``: the one scheduler handles the tasks one by one)."""

    name: str
    latency: float
    bandwidth: float
    overhead: float | None = None

    def __post_init__(self) -> None:
        check_float("latency", self.latency, low=0.0)
        check_float("bandwidth", self.bandwidth, low=0.0, low_open=True)
        if self.overhead is None:
            object.__setattr__(self, "overhead", self.latency)
        check_float("overhead", self.overhead, low=0.0)


DATACENTER_10G = Network("10 Gb/s datacenter", latency=50e-6, bandwidth=10e9 / 8)
"""Ethernet at 10 Gb/s with TCP: tens of microseconds per message."""
DATACENTER_100G = Network("100 Gb/s datacenter", latency=5e-6, bandwidth=100e9 / 8)
"""InfiniBand-class links with RDMA: a few microseconds per message."""


@dataclass(frozen=True)
class Calibration:
    """What one step costs on this machine, measured by ``calibration.calibrate`` (notebook 12).

    ``compute_per_value``: seconds per row and weight of one gradient on a worker. Two kinds of link:
    ``direct``, a call from the client to an actor on a worker (how the parameter server reaches its nodes),
    and ``hop``, a task on one worker waiting for a task's result on the other (how the ring passes a piece:
    the scheduler is told, then the workers transfer). ``cores``: worker processes. ``server_fixed`` and
    ``ring_fixed``: seconds of a one-node step apart from its compute (``None``: a bare round trip ``2 a``
    of the direct link, and three hops in a row ``3 a`` of the hop link). ``cache_bytes``: the largest ``X``
    whose gradient runs at about the in-cache rate ``compute_per_value``; ``memory_per_value``: seconds per row
    and weight for a larger ``X``, streamed from memory by every worker at once (default: the in-cache rate).
    """

    compute_per_value: float
    direct: Network
    hop: Network
    cores: int
    server_fixed: float | None = None
    ring_fixed: float | None = None
    cache_bytes: float = math.inf
    memory_per_value: float | None = None

    def __post_init__(self) -> None:
        check_float("compute_per_value", self.compute_per_value, low=0.0, low_open=True)
        check_int("cores", self.cores, low=1)
        if self.server_fixed is None:
            object.__setattr__(self, "server_fixed", 2 * self.direct.latency)
        if self.ring_fixed is None:
            object.__setattr__(self, "ring_fixed", 3 * self.hop.latency)
        check_float("server_fixed", self.server_fixed, low=0.0)
        check_float("ring_fixed", self.ring_fixed, low=0.0)
        if self.cache_bytes != math.inf:
            check_float("cache_bytes", self.cache_bytes, low=0.0, low_open=True)
        if self.memory_per_value is None:
            object.__setattr__(self, "memory_per_value", self.compute_per_value)
        check_float("memory_per_value", self.memory_per_value, low=0.0, low_open=True)

    @property
    def laptop(self) -> Network:
        """This machine's direct links as a network for the extrapolation, read the classic way (``g = a``)."""
        return Network("this laptop (measured)", self.direct.latency, self.direct.bandwidth)


def compute_time(n_rows: int, n_weights: int, n_nodes: int, compute_per_value: float,
                 cores: int | None = None) -> float:
    """Seconds of gradient compute in one step: the busiest core's share of ``n_rows * n_weights`` values.

    ``cores=None``: one core per node; otherwise each of the ``cores`` processes computes ``ceil(N / cores)``
    nodes one after the other (notebook 12's model of this machine).
    """
    per_core = math.ceil(n_nodes / min(n_nodes, cores or n_nodes))
    return compute_per_value * n_rows * n_weights / n_nodes * per_core


MODEL_TOPOLOGIES = ("server", "ring", "tree")
"""The topologies the model knows: the two the cluster runs (:data:`~dml_lesson.ps.ring.TOPOLOGIES`) and the
tree all-reduce, modelled only. A sharded server is ``"server"`` with ``shards``."""
EVERY_NODE = "N"
"""``shards=EVERY_NODE``: every node is also a server shard (``S = N``), the way parameter servers are deployed."""


def compared(shards: int = 8) -> tuple[tuple[str, int | str], ...]:
    """The ``(topology, shards)`` pairs notebook 12 compares: one server, ``shards`` dedicated server shards (an int
    >= 2, machines beyond the ``N`` nodes), every node a shard, ring, tree."""
    shards = check_int("shards", shards, low=2)
    return (("server", 1), ("server", shards), ("server", EVERY_NODE), ("ring", 1), ("tree", 1))


COMPARED = compared(8)
"""Notebook 12's comparison with 8 dedicated shards."""


def label(topology: str, shards: int | str = 1) -> str:
    """A topology's name in figures and status lines: ``"server"``, ``"server, S = 8"``, ``"server, S = N"``."""
    return topology if shards == 1 else f"{topology}, S = {shards}"


def _check_shards(topology: str, shards: int | str) -> int | str:
    if shards == EVERY_NODE:
        if topology != "server":
            raise ValueError(f"shards applies to topology 'server' only, got topology {topology!r}")
        return shards
    shards = check_int("shards", shards, low=1)
    if shards != 1 and topology != "server":
        raise ValueError(f"shards applies to topology 'server' only (ring and tree: 1), got {shards}")
    return shards


def comm_time(n_weights: int, n_nodes: int, topology: str, network: Network, shards: int | str = 1,
              nbytes: float | None = None) -> float:
    """Seconds of communication in one step, one machine per node (notebook 12's extrapolation).

    ``d + 2`` values travel (the gradient, the row count and the loss sum): ``m = 8 (d + 2)`` bytes.

    - server, ``S`` shards (``shards``: an int >= 1, dedicated server machines; or ``"N"``, every node also a
      shard). Push and pull each take as long as the busiest link: a shard's, ``a + (N - 1) g + N m / (S B)``,
      or a node's, ``a + (S - 1) g + m / B``; ``S = 1``: ``2 a + (2 N - 2) g + 2 N m / B``. Every node a shard:
      a node sends its ``N - 1`` other shards a piece of ``m / N`` bytes and answers ``N - 1`` nodes,
      ``2 (a + (N - 2) g + (N - 1) m / (N B))``, the ring's cost when ``g = a``;
    - ring: ``2 (N - 1) (a + m / (N B))``, rounds one after the other (each waits for the last piece);
    - tree: ``2 ceil(log2 N) (a + m / B)``, reduce to a root and broadcast back.

    ``n_weights`` and ``n_nodes`` must be >= 1; ``shards`` other than 1 only for ``"server"``; ``nbytes``: a
    message of another size than ``m`` (one bucket, :func:`bucket_comm_time`).
    """
    topology = check_choice("topology", topology, MODEL_TOPOLOGIES)
    shards = _check_shards(topology, shards)
    n = check_int("n_nodes", n_nodes, low=1)
    m = (check_int("n_weights", n_weights, low=1) + 2) * ITEMSIZE
    if nbytes is not None:
        m = check_float("nbytes", nbytes, low=0.0, low_open=True)
    a, g, bw = network.latency, network.overhead, network.bandwidth
    if topology == "ring":
        return 2 * (n - 1) * (a + m / (n * bw))
    if topology == "tree":
        return 2 * math.ceil(math.log2(n)) * (a + m / bw)
    if shards == EVERY_NODE:
        return 0.0 if n == 1 else 2 * (a + (n - 2) * g + (n - 1) * m / (n * bw))
    shard_link = a + (n - 1) * g + n * m / (shards * bw)
    node_link = a + (shards - 1) * g + m / bw
    return 2 * max(shard_link, node_link)


BACKWARD_SHARE = 0.5
"""The share of a step's compute that can overlap with its messages: the backward pass. For the linear model the
gradient ``X^T (X w - y)`` is a forward pass ``X w`` and a backward pass ``X^T r`` of ``n d`` multiply-adds each."""


def step_time(compute: float | np.ndarray, bucket_comm: float | np.ndarray, buckets: int = 1,
              overlappable: float = BACKWARD_SHARE) -> float | np.ndarray:
    """One step from its compute and the communication of one bucket (notebook 12).

    ``buckets=1``: no overlap, ``compute + bucket_comm`` (``bucket_comm`` is then the whole gradient's). With
    ``k = buckets`` > 1 the backward share ``A = overlappable * compute`` is cut into ``k`` parts, each sent as an
    all-reduce of its own (``bucket_comm`` seconds, see :func:`bucket_comm_time`) as soon as it is computed, while
    the next part is computed: a two-stage pipeline, ``(compute - A) + A / k + C_b + (k - 1) max(A / k, C_b)``.
    Never faster than ``max(compute, k C_b)`` nor than the compute; slower than no overlap when each bucket's
    latency outweighs the compute it hides. ``buckets`` >= 1, ``overlappable`` in [0, 1].
    """
    k = check_int("buckets", buckets, low=1)
    f = check_float("overlappable", overlappable, low=0.0, high=1.0)
    if k == 1:
        return compute + bucket_comm
    part = f * np.asarray(compute) / k
    return (1 - f) * compute + part + bucket_comm + (k - 1) * np.maximum(part, bucket_comm)


def bucket_comm_time(n_weights: int, n_nodes: int, topology: str, network: Network, shards: int | str = 1,
                     buckets: int = 1) -> float:
    """Seconds of one bucket's all-reduce: :func:`comm_time` of ``m / buckets`` bytes, the latency paid in full
    (notebook 12). A sharded server's bucket is split over its shards like the whole gradient."""
    k = check_int("buckets", buckets, low=1)
    return comm_time(n_weights, n_nodes, topology, network, shards, nbytes=(n_weights + 2) * ITEMSIZE / k)


def predict_step_time(n_rows: int, n_weights: int, n_nodes: int | np.ndarray, topology: str, network: Network,
                      compute_per_value: float, shards: int | str = 1, buckets: int = 1) -> np.ndarray:
    """Predicted seconds per step for each node count, one core per node (notebook 12's figure and sliders).

    ``shards``: server shards (see :func:`comm_time`); ``buckets``: overlap of the backward pass with the
    buckets' all-reduces (see :func:`step_time`; 1: none).
    """
    n_rows = check_int("n_rows", n_rows, low=1)
    n_weights = check_int("n_weights", n_weights, low=1)
    check_float("compute_per_value", compute_per_value, low=0.0, low_open=True)
    check_int("buckets", buckets, low=1)
    nodes = np.atleast_1d(np.asarray(n_nodes))
    if nodes.min() < 1:
        raise ValueError(f"n_nodes must be >= 1, got {nodes.min()}")
    return np.array([
        step_time(compute_time(n_rows, n_weights, int(n), compute_per_value),
                  bucket_comm_time(n_weights, int(n), topology, network, shards, buckets), buckets)
        for n in nodes
    ])


def speedup(n_rows: int, n_weights: int, n_nodes: int | np.ndarray, topology: str, network: Network,
            compute_per_value: float, shards: int | str = 1, buckets: int = 1) -> np.ndarray:
    """Single-machine step time (no communication) over the predicted distributed step time, one core per node
    (notebook 12). A sharded server's dedicated shards (``shards`` an int) are machines beyond the ``N`` nodes."""
    single = compute_per_value * n_rows * n_weights
    return single / predict_step_time(n_rows, n_weights, n_nodes, topology, network, compute_per_value, shards,
                                      buckets)


def break_even_rows(n_weights: int, n_nodes: int, topology: str, network: Network, compute_per_value: float,
                    shards: int | str = 1) -> float:
    """The rule as a number: rows from which ``n_nodes`` nodes beat one machine (compute saved = communication).

    ``c * n * d * (1 - 1/N) = comm``  gives  ``n = comm / (c * d * (1 - 1/N))``; infinite for one node
    (notebook 12). Without overlap.
    """
    n = check_int("n_nodes", n_nodes, low=1)
    if n == 1:
        return math.inf
    comm = comm_time(n_weights, n, topology, network, shards)
    return comm / (compute_per_value * n_weights * (1 - 1 / n))


def local_compute_time(cal: Calibration, n_rows: int, n_weights: int, n_nodes: int) -> float:
    """Seconds of gradient compute in one step on this machine (notebook 12, :func:`local_step_time`).

    The busiest worker's nodes one after the other (:func:`compute_time` with ``cal.cores``), at the in-cache
    rate if the data, ``8 * n_rows * n_weights`` bytes, fits in ``cal.cache_bytes`` (both workers share the
    cache, and the shards stay in it from one step to the next), else at the rate from memory.
    """
    in_cache = ITEMSIZE * n_rows * n_weights <= cal.cache_bytes
    rate = cal.compute_per_value if in_cache else cal.memory_per_value
    return compute_time(n_rows, n_weights, n_nodes, rate, cal.cores)


def local_step_time(cal: Calibration, n_rows: int, n_weights: int, n_nodes: int, topology: str) -> float:
    """The model for this machine's own runs: ``N`` nodes on ``cal.cores`` workers (notebook 12,
    ``benchmarks/scaling.py``).

    With ``T_comp`` the compute (:func:`local_compute_time`), ``m = 8 (d + 2)`` bytes, and ``F`` the measured fixed
    cost of a one-node step:

    - server (actors): ``F_server + T_comp + (2 N - 2) g + 2 N m / B`` with the direct link's ``g`` and ``B``.
      ``F_server`` holds the one round trip, the hop to the worker's compute thread and the client's loop;
      each of the other ``2 N - 2`` messages, in flight at the same time, adds ``g``;
    - ring (tasks): ``F_ring + T_comp + 2 (N - 1) (a + m / (N B)) + 2 N (N - 1) g`` with the hop link's ``a``,
      ``B`` and ``g``. ``F_ring`` holds the three task hops of a one-node step (its gradient, cutting it into
      pieces, assembling node 0's copy); ``N`` nodes add ``2 (N - 1)`` ring rounds of one hop each, and in
      ``2 N`` rounds (the gradients, the cutting, the ring rounds) ``N`` tasks go through the scheduler at
      once instead of one: ``N - 1`` extra tasks per round, ``g`` each.

    Returns predicted seconds per step; ``n_rows``, ``n_weights`` and ``n_nodes`` must be >= 1.
    """
    topology = check_choice("topology", topology, TOPOLOGIES)
    n_rows = check_int("n_rows", n_rows, low=1)
    n_weights = check_int("n_weights", n_weights, low=1)
    n = check_int("n_nodes", n_nodes, low=1)
    compute = local_compute_time(cal, n_rows, n_weights, n)
    nbytes = (n_weights + 2) * ITEMSIZE
    if topology == "server":
        link = cal.direct
        return cal.server_fixed + compute + (2 * n - 2) * link.overhead + 2 * n * nbytes / link.bandwidth
    link = cal.hop
    rounds = 2 * (n - 1) * (link.latency + nbytes / (n * link.bandwidth))
    return cal.ring_fixed + compute + rounds + 2 * n * (n - 1) * link.overhead
